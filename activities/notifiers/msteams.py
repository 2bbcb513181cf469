"""Microsoft Teams notifier: Flagger's legacy connector MessageCard (pkg/notifier/teams.go), not an Adaptive Card."""

from __future__ import annotations

from typing import Any

from activities.contracts import Alert
from activities.notifiers.base import post_notification

INFO_THEME_COLOR = "0076D7"
ERROR_THEME_COLOR = "FF0000"


def msteams_payload(alert: Alert) -> dict[str, Any]:
    subject = f"{alert.canary_name}.{alert.canary_namespace}"
    return {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": ERROR_THEME_COLOR if alert.severity == "error" else INFO_THEME_COLOR,
        "summary": subject,
        "sections": [
            {
                "activityTitle": alert.message,
                "activitySubtitle": subject,
                "facts": [{"name": name, "value": value} for name, value in alert.fields.items()],
            }
        ],
    }


class MSTeamsNotifier:
    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        await post_notification(address, msteams_payload(alert), None, proxy)
