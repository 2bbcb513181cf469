"""Google Chat notifier: Flagger's card (pkg/notifier/gchat.go): one header, one text section per line.

Google Chat has no per-message colour, so the severity does not show (as in Flagger).
"""

from __future__ import annotations

from typing import Any

from activities.contracts import Alert
from activities.notifiers.base import post_notification

# Kept as Flagger sends them so existing Chat spaces look the same after a switch.
CARD_TITLE = "Flagger"
CARD_IMAGE_URL = "https://flagger.app/favicon.png"
GREY = "#848484"


def _paragraph(text: str) -> dict[str, Any]:
    return {"widgets": [{"textParagraph": {"text": text}}]}


def gchat_payload(alert: Alert) -> dict[str, Any]:
    sections = [_paragraph(f"<font color={GREY}><strong>{alert.message}</strong></font>")]
    sections += [
        _paragraph(f"{name}<br><font color={GREY}><strong>{value}</strong></font>")
        for name, value in alert.fields.items()
    ]
    return {
        "cards": [
            {
                "header": {
                    "title": CARD_TITLE,
                    "subtitle": f"{alert.canary_name}.{alert.canary_namespace}",
                    "imageUrl": CARD_IMAGE_URL,
                },
                "sections": sections,
            }
        ]
    }


class GChatNotifier:
    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        await post_notification(address, gchat_payload(alert), None, proxy)
