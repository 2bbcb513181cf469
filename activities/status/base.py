"""Status sinks: where a release's state is published outside Temporal (Canary status and Events, worker metrics).

Every sink receives every report; a sink decides for itself whether a report concerns it (the Kubernetes sink
ignores local-platform releases). A failing sink never fails a release.
"""

from __future__ import annotations

from typing import Protocol

from activities.contracts import StatusReport


class StatusSink(Protocol):
    name: str

    async def publish(self, report: StatusReport) -> None:
        """Apply the report idempotently (the same report may arrive twice); raise when it could not be applied."""


STATUS_SINKS: dict[str, StatusSink] = {}


def register_status_sink(sink: StatusSink) -> None:
    STATUS_SINKS[sink.name] = sink
