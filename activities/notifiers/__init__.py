"""Alert notifiers, one per AlertProvider type, registered in `NOTIFIERS`.

Flagger's AlertProvider types are slack, msteams, discord, rocket and gchat; there is no generic JSON type (event
webhooks are Canary webhooks of type `event`).
"""

from activities.notifiers.base import (
    NOTIFIERS,
    NotificationError,
    Notifier,
    NotifierNotRegistered,
    get_notifier,
    register_notifier,
)
from activities.notifiers.discord import DiscordNotifier
from activities.notifiers.gchat import GChatNotifier
from activities.notifiers.msteams import MSTeamsNotifier
from activities.notifiers.rocket import RocketNotifier
from activities.notifiers.slack import SlackNotifier
from workflows.decisions import alert_wanted

register_notifier("slack", SlackNotifier())
register_notifier("discord", DiscordNotifier())
register_notifier("rocket", RocketNotifier())
register_notifier("msteams", MSTeamsNotifier())
register_notifier("gchat", GChatNotifier())

__all__ = [
    "NOTIFIERS",
    "DiscordNotifier",
    "GChatNotifier",
    "MSTeamsNotifier",
    "NotificationError",
    "Notifier",
    "NotifierNotRegistered",
    "RocketNotifier",
    "SlackNotifier",
    "alert_wanted",
    "get_notifier",
    "register_notifier",
]
