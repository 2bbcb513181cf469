"""The notifier interface, its registry keyed by AlertProvider `spec.type`, and what every notifier shares."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from activities.contracts import Alert

NOTIFICATION_TIMEOUT_SECONDS = 5.0  # Flagger's notifier timeout
ERROR_BODY_LIMIT_CHARS = 1024

SEVERITY_RANK = {"info": 0, "warn": 1, "error": 2}


class NotificationError(Exception):
    """A notifier could not deliver an alert. The message must not contain the address or the token."""


class NotifierNotRegistered(LookupError):
    def __init__(self, type_name: str) -> None:
        super().__init__(f"no notifier registered for type {type_name}")
        self.type_name = type_name


class Notifier(Protocol):
    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        """Deliver the alert to `address`; raise (NotificationError preferably) when it was not delivered."""
        ...


NOTIFIERS: dict[str, Notifier] = {}


def register_notifier(type_name: str, notifier: Notifier) -> None:
    NOTIFIERS[type_name] = notifier


def get_notifier(type_name: str) -> Notifier:
    try:
        return NOTIFIERS[type_name]
    except KeyError:
        raise NotifierNotRegistered(type_name) from None


async def post_notification(
    address: str, payload: dict[str, Any], token: str | None, proxy: str | None
) -> httpx.Response:
    """POST JSON like Flagger's notifiers: 5 s timeout, optional proxy and Bearer token; non-2xx raises."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(proxy=proxy or None, timeout=NOTIFICATION_TIMEOUT_SECONDS) as client:
            response = await client.post(address, json=payload, headers=headers)
    except httpx.TimeoutException:
        raise NotificationError(f"sending notification timed out after {NOTIFICATION_TIMEOUT_SECONDS:g}s") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        # The error text repeats the URL, which may carry a token.
        raise NotificationError("sending notification failed: the address is not a valid http(s) URL") from None
    except httpx.HTTPError as error:
        raise NotificationError(f"sending notification failed: {str(error) or type(error).__name__}") from None
    if not 200 <= response.status_code < 300:
        body = response.text.strip()[:ERROR_BODY_LIMIT_CHARS]
        raise NotificationError(f"sending notification bad response {response.status_code}: {body}")
    return response
