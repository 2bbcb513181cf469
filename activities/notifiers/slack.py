"""Slack notifier with Flagger's message layout (pkg/notifier/slack.go); Discord and Rocket.Chat reuse it."""

from __future__ import annotations

from typing import Any

from activities.contracts import Alert
from activities.notifiers.base import NotificationError, post_notification

# Flagger's defaults when the AlertProvider leaves channel or username empty.
DEFAULT_CHANNEL = "general"
DEFAULT_USERNAME = "flagger"


def slack_payload(alert: Alert, *, info_color: str = "good", error_color: str = "danger") -> dict[str, Any]:
    """One attachment: `info_color` unless the event is an error (warn keeps the info colour, as in Flagger)."""
    spec = alert.provider.spec
    return {
        "channel": spec.channel or DEFAULT_CHANNEL,
        "username": spec.username or DEFAULT_USERNAME,
        "icon_url": "",  # Flagger always sends it, empty
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": error_color if alert.severity == "error" else info_color,
                "author_name": f"{alert.canary_name}.{alert.canary_namespace}",
                "text": alert.message,
                "mrkdwn_in": ["text"],
                "fields": [{"title": title, "value": value, "short": False} for title, value in alert.fields.items()],
            }
        ],
    }


class SlackNotifier:
    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        response = await post_notification(address, slack_payload(alert), token, proxy)
        # With a bot token the address is the Web API (chat.postMessage): it reports errors in a 200 answer.
        if token and response.headers.get("content-type", "").startswith("application/json"):
            answer = response.json()
            if isinstance(answer, dict) and answer.get("ok") is False:
                raise NotificationError(f"Slack API refused the message: {answer.get('error', 'unknown error')}")
