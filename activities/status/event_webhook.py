"""Flagger's global `-event-webhook`: every event of every release is POSTed to one URL.

Set `CANARYFLOW_EVENT_WEBHOOK` to an http(s) URL, or to `secret:<name>/<key>` to read it (in the canary's
namespace) inside the activity. The payload is Flagger's event payload: `{name, namespace, phase, checksum,
metadata: {eventMessage, eventType, timestamp}}`. Canary-level `event` webhooks are called by the workflow itself.
"""

from __future__ import annotations

from activities.contracts import ReportedDecision, StatusReport, WebhookCall
from activities.webhooks import post_webhook
from workflows.decisions import event_metadata, webhook_payload

EVENT_KINDS = {"event", "warning"}  # decision kinds Flagger records as events
EVENT_TIMEOUT_SECONDS = 10.0


class EventWebhookSink:
    name = "event-webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    async def publish(self, report: StatusReport) -> None:
        failures = []
        for decision in report.new_decisions:
            if decision.kind not in EVENT_KINDS:
                continue
            result = await post_webhook(self._call(report, decision))
            if not result.ok:
                failures.append(result.message)
        if failures:
            raise RuntimeError(f"{len(failures)} event(s) not delivered: {failures[0]}")

    def _call(self, report: StatusReport, decision: ReportedDecision) -> WebhookCall:
        return WebhookCall(
            name=self.name,
            type="event",
            url=self.url,
            timeout_seconds=EVENT_TIMEOUT_SECONDS,
            payload=webhook_payload(
                report.name,
                report.namespace,
                decision.phase,
                report.revision,
                event_metadata(decision.message, decision.kind == "warning", decision.at),
            ),
        )
