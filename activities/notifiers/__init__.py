"""Alert notifiers, one per AlertProvider type, registered in `NOTIFIERS`."""

from activities.notifiers.base import (
    NOTIFIERS,
    NotificationError,
    Notifier,
    NotifierNotRegistered,
    alert_wanted,
    get_notifier,
    register_notifier,
)
from activities.notifiers.slack import SlackNotifier

register_notifier("slack", SlackNotifier())

__all__ = [
    "NOTIFIERS",
    "NotificationError",
    "Notifier",
    "NotifierNotRegistered",
    "SlackNotifier",
    "alert_wanted",
    "get_notifier",
    "register_notifier",
]
