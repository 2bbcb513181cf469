"""Flagger's global event webhook (CANARYFLOW_EVENT_WEBHOOK): every event of a release reaches one receiver."""

from __future__ import annotations

import pytest

from activities.contracts import ReportedDecision
from activities.platforms import register_platforms
from activities.status.base import STATUS_SINKS
from activities.status.event_webhook import EventWebhookSink
from canaryflow.settings import Settings
from tests.helpers.http_receiver import HttpReceiver, ScriptedResponse
from tests.observability.reports import STARTED, report
from workflows.decisions import revision_checksum


def decision(index: int, kind: str, message: str) -> ReportedDecision:
    return ReportedDecision(index=index, at=STARTED, phase="Progressing", kind=kind, message=message)


async def test_events_and_warnings_are_posted_with_flaggers_payload() -> None:
    with HttpReceiver() as receiver:
        sink = EventWebhookSink(receiver.url_for("/events"))
        await sink.publish(
            report(
                new_decisions=[
                    decision(3, "event", "Advance podinfo.test canary weight 10"),
                    decision(4, "metric", "request-success-rate: 99.9 >= 99"),
                    decision(5, "warning", "Halt advancement no values found for metric request-duration"),
                ]
            )
        )
        payloads = [r.json for r in receiver.requests]
    timestamp = str(int(STARTED.timestamp() * 1000))
    assert payloads == [
        {
            "name": "podinfo-canary",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": revision_checksum("rev-2"),
            "metadata": {
                "eventMessage": "Advance podinfo.test canary weight 10",
                "eventType": "Normal",
                "timestamp": timestamp,
            },
        },
        {
            "name": "podinfo-canary",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": revision_checksum("rev-2"),
            "metadata": {
                "eventMessage": "Halt advancement no values found for metric request-duration",
                "eventType": "Warning",
                "timestamp": timestamp,
            },
        },
    ]


async def test_an_unreachable_receiver_is_reported_not_hidden() -> None:
    with HttpReceiver() as receiver:
        receiver.script(ScriptedResponse(status=500))
        sink = EventWebhookSink(receiver.url_for("/events"))
        with pytest.raises(RuntimeError, match="1 event\\(s\\) not delivered"):
            await sink.publish(report(new_decisions=[decision(0, "event", "Initialization done! podinfo.test")]))


def test_the_worker_registers_the_sink_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYFLOW_KUBERNETES", "off")
    STATUS_SINKS.pop("event-webhook", None)
    register_platforms(Settings())
    assert "event-webhook" not in STATUS_SINKS
    monkeypatch.setenv("CANARYFLOW_EVENT_WEBHOOK", "http://127.0.0.1:9/events")
    register_platforms(Settings())
    sink = STATUS_SINKS.pop("event-webhook")
    assert isinstance(sink, EventWebhookSink) and sink.url == "http://127.0.0.1:9/events"
