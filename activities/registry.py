"""Every activity a canaryflow worker serves, and the place platforms plug their providers in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.dispatch import DISPATCH_ACTIVITIES


def default_activities() -> list[Callable[..., Any]]:
    from activities.notifiers.activity import send_alert
    from activities.status.activity import report_status
    from activities.webhooks import call_webhook

    return [*DISPATCH_ACTIVITIES, call_webhook, send_alert, report_status]
