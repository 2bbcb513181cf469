"""The worker's /metrics endpoint: release families and the Temporal SDK's families on one scrape."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from activities.status.metrics import PrometheusStatusSink
from activities.status.metrics_endpoint import METRICS_CONTENT_TYPE, MetricsEndpoint
from tests.conftest import free_port
from tests.helpers.http_receiver import HttpReceiver, ScriptedResponse
from tests.observability.reports import get, labels, parse_exposition, report, series

SDK_TEXT = (
    "# HELP temporal_worker_task_slots_available Free slots\n"
    "# TYPE temporal_worker_task_slots_available gauge\n"
    'temporal_worker_task_slots_available{task_queue="q",worker_type="ActivityWorker"} 7\n'
)


@pytest.fixture
def sink() -> PrometheusStatusSink:
    sink = PrometheusStatusSink()
    sink.apply(report(canary_weight=30, primary_weight=70))
    return sink


@pytest.fixture
def sdk_exporter() -> Iterator[HttpReceiver]:
    with HttpReceiver(default=ScriptedResponse(status=200, body=SDK_TEXT)) as exporter:
        yield exporter


@pytest.fixture
def endpoint_for() -> Iterator[list[MetricsEndpoint]]:
    """Endpoints the test starts; all stopped after it."""
    started: list[MetricsEndpoint] = []
    yield started
    for endpoint in started:
        endpoint.stop()


def start(started: list[MetricsEndpoint], registry: CollectorRegistry, sdk_address: str | None) -> MetricsEndpoint:
    endpoint = MetricsEndpoint(f"127.0.0.1:{free_port()}", registry, sdk_address)
    endpoint.start()
    started.append(endpoint)
    return endpoint


def test_one_scrape_shows_the_release_and_the_sdk_families(
    sink: PrometheusStatusSink, sdk_exporter: HttpReceiver, endpoint_for: list[MetricsEndpoint]
) -> None:
    endpoint = start(endpoint_for, sink.registry, f"127.0.0.1:{sdk_exporter.port}")

    status, content_type, text = get(f"http://127.0.0.1:{endpoint.port}/metrics")

    assert (status, content_type) == (200, METRICS_CONTENT_TYPE)
    samples = parse_exposition(text)
    assert series(samples, "flagger_canary_weight")[labels(workload="podinfo", namespace="test")] == 30
    assert series(samples, "temporal_worker_task_slots_available") == {
        labels(task_queue="q", worker_type="ActivityWorker"): 7
    }
    assert [request.path for request in sdk_exporter.requests] == ["/metrics"]


def test_without_the_sdk_exporter_the_release_families_are_still_served(
    sink: PrometheusStatusSink, endpoint_for: list[MetricsEndpoint]
) -> None:
    endpoint = start(endpoint_for, sink.registry, f"127.0.0.1:{free_port()}")  # nothing listens there

    status, _, text = get(f"http://127.0.0.1:{endpoint.port}/metrics")

    assert status == 200
    assert series(parse_exposition(text), "flagger_canary_status") == {labels(name="podinfo", namespace="test"): 0}


def test_other_paths_are_not_found(sink: PrometheusStatusSink, endpoint_for: list[MetricsEndpoint]) -> None:
    endpoint = start(endpoint_for, sink.registry, None)

    assert get(f"http://127.0.0.1:{endpoint.port}/")[0] == 404


def test_a_bind_in_use_is_a_clear_error(sink: PrometheusStatusSink) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ValueError, match=f"cannot serve worker metrics on '{bind}'"):
            MetricsEndpoint(bind, sink.registry)
