"""Alert notifiers, one per AlertProvider type, registered in `NOTIFIERS`."""

from activities.notifiers.base import (
    NOTIFIERS,
    NotificationError,
    Notifier,
    NotifierNotRegistered,
    get_notifier,
    register_notifier,
)
from activities.notifiers.slack import SlackNotifier
from workflows.decisions import alert_wanted

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
