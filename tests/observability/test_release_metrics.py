"""The metrics status sink: reports in, Flagger's families out (read back from the text exposition)."""

from __future__ import annotations

import importlib.metadata
from datetime import timedelta

import pytest

from activities.status.base import STATUS_SINKS
from activities.status.metrics import PrometheusStatusSink, register_metrics_sink
from tests.observability.reports import STARTED, labels, report, scrape, series

PODINFO = labels(name="podinfo", namespace="test")


@pytest.fixture
def sink() -> PrometheusStatusSink:
    return PrometheusStatusSink()


async def test_a_progressing_report_sets_flaggers_gauges(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(last_metrics={"request-success-rate": 99.5, "request-duration": None}))

    samples = scrape(sink.registry)
    assert series(samples, "flagger_canary_status") == {PODINFO: 0}
    assert series(samples, "flagger_canary_weight") == {
        labels(workload="podinfo-primary", namespace="test"): 90,
        labels(workload="podinfo", namespace="test"): 10,
    }
    assert series(samples, "flagger_canary_total") == {labels(namespace="test"): 1}
    assert series(samples, "flagger_canary_metric_analysis") == {
        labels(name="podinfo", namespace="test", metric="request-success-rate"): 99.5
    }
    assert series(samples, "canaryflow_canary_failed_checks") == {PODINFO: 0}
    assert series(samples, "canaryflow_canary_failed_checks_threshold") == {PODINFO: 5}
    assert series(samples, "canaryflow_canary_iterations") == {PODINFO: 1}
    assert series(samples, "canaryflow_canary_mirrored") == {PODINFO: 0}
    assert series(samples, "canaryflow_release_last_transition_timestamp_seconds") == {
        PODINFO: (STARTED + timedelta(seconds=30)).timestamp()
    }
    assert series(samples, "flagger_canary_successes_total") == {}
    assert series(samples, "flagger_canary_failures_total") == {}
    assert series(samples, "flagger_canary_duration_seconds_count") == {}


async def test_the_phase_gauge_marks_only_the_current_phase(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(phase="Progressing", sequence=1))
    await sink.publish(report(phase="WaitingPromotion", sequence=2))

    phases = series(scrape(sink.registry), "canaryflow_release_phase")
    assert {dict(key)["phase"] for key, value in phases.items() if value == 1} == {"WaitingPromotion"}
    assert {dict(key)["phase"] for key in phases} >= {"Initialized", "Progressing", "Succeeded", "Failed"}
    assert all(dict(key)["name"] == "podinfo" for key in phases)


@pytest.mark.parametrize(("phase", "status"), [("Progressing", 0), ("Promoting", 1), ("Succeeded", 1), ("Failed", 2)])
async def test_status_follows_flaggers_encoding(sink: PrometheusStatusSink, phase: str, status: int) -> None:
    await sink.publish(report(phase=phase))

    assert series(scrape(sink.registry), "flagger_canary_status") == {PODINFO: status}


async def test_a_success_is_counted_once_with_its_duration(sink: PrometheusStatusSink) -> None:
    done = report(
        phase="Succeeded",
        primary_weight=100,
        canary_weight=0,
        finished=True,
        outcome="Canary analysis completed successfully, promotion finished.",
        last_transition_time=STARTED + timedelta(seconds=150),
        sequence=9,
    )
    await sink.publish(report(sequence=8))
    await sink.publish(done)
    await sink.publish(done)  # an activity retry delivers the same report again
    await sink.publish(done.model_copy(update={"sequence": 10}))  # the workflow flushes its final state twice

    samples = scrape(sink.registry)
    assert series(samples, "flagger_canary_successes_total") == {
        labels(name="podinfo", namespace="test", deployment_strategy="canary", analysis_status="completed"): 1
    }
    assert series(samples, "flagger_canary_failures_total") == {}
    assert series(samples, "flagger_canary_duration_seconds_count") == {PODINFO: 1}
    assert series(samples, "flagger_canary_duration_seconds_sum") == {PODINFO: 150}
    buckets = series(samples, "flagger_canary_duration_seconds_bucket")
    assert buckets[labels(name="podinfo", namespace="test", le="10.0")] == 0
    assert buckets[labels(name="podinfo", namespace="test", le="+Inf")] == 1
    assert series(samples, "flagger_canary_status") == {PODINFO: 1}


async def test_a_failure_is_counted_with_status_2(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(phase="Failed", canary_weight=0, primary_weight=100, failed_checks=5, finished=True))

    samples = scrape(sink.registry)
    assert series(samples, "flagger_canary_failures_total") == {
        labels(name="podinfo", namespace="test", deployment_strategy="canary", analysis_status="completed"): 1
    }
    assert series(samples, "flagger_canary_successes_total") == {}
    assert series(samples, "flagger_canary_status") == {PODINFO: 2}
    assert series(samples, "canaryflow_canary_failed_checks") == {PODINFO: 5}


async def test_a_skipped_analysis_is_counted_as_skipped(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(phase="Succeeded", finished=True, skipped_analysis=True))

    assert series(scrape(sink.registry), "flagger_canary_successes_total") == {
        labels(name="podinfo", namespace="test", deployment_strategy="canary", analysis_status="skipped"): 1
    }


async def test_an_initialization_only_release_counts_no_outcome(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(phase="Initialized", primary_weight=100, canary_weight=0, finished=True))

    samples = scrape(sink.registry)
    assert series(samples, "flagger_canary_successes_total") == {}
    assert series(samples, "flagger_canary_failures_total") == {}
    assert series(samples, "flagger_canary_duration_seconds_count") == {}
    assert series(samples, "flagger_canary_status") == {PODINFO: 1}


async def test_a_late_older_report_changes_nothing(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(canary_weight=30, primary_weight=70, sequence=4))
    await sink.publish(report(canary_weight=20, primary_weight=80, sequence=3))

    assert series(scrape(sink.registry), "flagger_canary_weight")[labels(workload="podinfo", namespace="test")] == 30


async def test_the_next_release_of_the_same_canary_is_counted_again(sink: PrometheusStatusSink) -> None:
    first = report(phase="Succeeded", finished=True, sequence=12)
    # The next release reuses the workflow id; its reports start again at sequence 1.
    next_start = STARTED + timedelta(hours=1)
    second = report(
        phase="Failed",
        finished=True,
        revision="rev-3",
        started_at=next_start,
        last_transition_time=next_start + timedelta(seconds=60),
        sequence=1,
    )
    for delivered in (first, second, first):
        await sink.publish(delivered)

    samples = scrape(sink.registry)
    assert sum(series(samples, "flagger_canary_successes_total").values()) == 1
    assert sum(series(samples, "flagger_canary_failures_total").values()) == 1
    assert series(samples, "flagger_canary_duration_seconds_count") == {PODINFO: 2}
    assert series(samples, "flagger_canary_status") == {PODINFO: 2}  # the older release's report came late


async def test_a_metric_without_values_keeps_its_last_value(sink: PrometheusStatusSink) -> None:
    await sink.publish(report(last_metrics={"error-rate": 0.5}, sequence=1))
    await sink.publish(report(last_metrics={"error-rate": None}, sequence=2))

    assert series(scrape(sink.registry), "flagger_canary_metric_analysis") == {
        labels(name="podinfo", namespace="test", metric="error-rate"): 0.5
    }


async def test_canaries_are_totalled_per_namespace(sink: PrometheusStatusSink) -> None:
    await sink.publish(report())
    await sink.publish(report(workflow_id="canary/test/web", name="web", target_name="web"))
    await sink.publish(report(workflow_id="canary/prod/web", name="web", target_name="web", namespace="prod"))
    await sink.publish(report(sequence=2))

    assert series(scrape(sink.registry), "flagger_canary_total") == {
        labels(namespace="test"): 2,
        labels(namespace="prod"): 1,
    }


def test_the_process_sink_is_registered_once_as_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(STATUS_SINKS, "metrics", raising=False)  # restored after the test
    sink = register_metrics_sink()

    assert register_metrics_sink() is sink
    assert STATUS_SINKS["metrics"] is sink
    samples = scrape(sink.registry)
    assert series(samples, "canaryflow_info") == {labels(version=importlib.metadata.version("canaryflow")): 1}
    assert any(name.startswith("process_") for name, _ in samples)
