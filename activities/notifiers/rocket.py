"""Rocket.Chat notifier: Flagger's Slack payload with Rocket.Chat colours (pkg/notifier/rocket.go)."""

from __future__ import annotations

from typing import Any

from activities.contracts import Alert
from activities.notifiers.base import post_notification
from activities.notifiers.slack import slack_payload

INFO_COLOR = "#0076D7"
ERROR_COLOR = "#FF0000"


def rocket_payload(alert: Alert) -> dict[str, Any]:
    return slack_payload(alert, info_color=INFO_COLOR, error_color=ERROR_COLOR)


class RocketNotifier:
    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        await post_notification(address, rocket_payload(alert), None, proxy)
