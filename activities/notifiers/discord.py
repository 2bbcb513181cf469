"""Discord notifier: Flagger posts its Slack payload to the webhook's Slack-compatible endpoint (`<url>/slack`)."""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit, urlunsplit

from activities.contracts import Alert
from activities.notifiers.base import post_notification
from activities.notifiers.slack import slack_payload

SLACK_COMPATIBLE_SUFFIX = "/slack"


def slack_compatible_url(address: str) -> str:
    """`address` with `slack` joined to its path, unless the path already ends in `/slack` (Flagger's rule)."""
    parts = urlsplit(address)
    if parts.path.endswith(SLACK_COMPATIBLE_SUFFIX):
        return address
    path = posixpath.normpath(posixpath.join(parts.path or "/", "slack"))
    return urlunsplit(parts._replace(path=path))


class DiscordNotifier:
    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        # Flagger sends no token to Discord: the webhook URL is the credential.
        await post_notification(slack_compatible_url(address), slack_payload(alert), None, proxy)
