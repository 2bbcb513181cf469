"""A release run by `run_worker` on the time-skipping server, its /metrics scraped mid-release and at the end."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import pytest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.status.activity import report_status
from activities.status.base import STATUS_SINKS
from canaryflow.client import start_release
from canaryflow.settings import Settings
from tests.conftest import free_port
from tests.integration.test_worker_process import running_worker
from tests.observability.reports import Samples, get, labels, parse_exposition, series
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import canary, request
from workflows import ALL_WORKFLOWS

pytestmark = pytest.mark.workflow


def scrape(bind: str) -> Samples:
    status, _, text = get(f"http://{bind}/metrics")
    assert status == 200, text
    # Prometheus refuses a scrape that declares one family twice (ours and the SDK's share the page).
    declared = re.findall(r"^# TYPE (\S+)", text, flags=re.MULTILINE)
    assert len(declared) == len(set(declared)), sorted(n for n in declared if declared.count(n) > 1)
    return parse_exposition(text)


@pytest.fixture
def restored_status_sinks() -> Iterator[None]:
    """The worker registers its metrics sink; other tests get the registry as it was."""
    saved = dict(STATUS_SINKS)
    yield
    STATUS_SINKS.clear()
    STATUS_SINKS.update(saved)


@pytest.mark.usefixtures("restored_status_sinks")
async def test_release_metrics_are_scraped_during_and_after_a_release(time_skipping_env: WorkflowEnvironment) -> None:
    target = f"podinfo-{uuid.uuid4().hex[:8]}"
    bind = f"127.0.0.1:{free_port()}"
    settings = Settings(
        temporal_address=time_skipping_env.client.service_client.config.target_host,
        task_queue=f"test-{uuid.uuid4()}",
        worker_metrics_bind=bind,
        register_search_attributes=False,
        graceful_shutdown_seconds=2,
    )
    mid_release: list[Samples] = []

    def metric(name: str, call: int) -> float:
        if name == "request-success-rate" and call == 2:
            mid_release.append(scrape(bind))  # the second analysis tick: the canary has 40% of the traffic
        return 99.9 if name == "request-success-rate" else 100.0

    platform = FakePlatform(metric=metric)
    # The platform's own activities, except that status reports go to the real activity and its sinks.
    activities = [a for a in platform.activities() if a != platform.report_status] + [report_status]
    spec = canary(targetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": target})
    spec.metadata.name = target
    async with running_worker(settings, ALL_WORKFLOWS, activities):
        started = await start_release(time_skipping_env.client, request(spec), task_queue=settings.task_queue)
        try:
            result = await started.handle.result()
        finally:
            with contextlib.suppress(RPCError):
                await started.handle.terminate(reason="test finished")
        at_the_end = scrape(bind)

    assert result.phase == "Succeeded"
    canary_series = labels(name=target, namespace="test")
    [during] = mid_release
    assert series(during, "flagger_canary_status")[canary_series] == 0
    assert series(during, "flagger_canary_weight")[labels(workload=target, namespace="test")] == 40
    assert series(during, "flagger_canary_weight")[labels(workload=f"{target}-primary", namespace="test")] == 60
    assert series(during, "flagger_canary_metric_analysis")[
        labels(name=target, namespace="test", metric="request-success-rate")
    ] == pytest.approx(99.9)
    assert series(during, "canaryflow_release_phase")[labels(name=target, namespace="test", phase="Progressing")] == 1
    assert any(name.startswith("temporal_") for name, _ in during)

    assert series(at_the_end, "flagger_canary_status")[canary_series] == 1
    assert series(at_the_end, "flagger_canary_weight")[labels(workload=target, namespace="test")] == 0
    successes = series(at_the_end, "flagger_canary_successes_total")
    outcome = labels(name=target, namespace="test", deployment_strategy="canary", analysis_status="completed")
    assert successes[outcome] == 1
    assert series(at_the_end, "flagger_canary_duration_seconds_count")[canary_series] == 1
    # Three analysis ticks and a promotion tick of 1m each, in virtual time.
    assert series(at_the_end, "flagger_canary_duration_seconds_sum")[canary_series] >= 180
    assert series(at_the_end, "canaryflow_release_phase")[labels(name=target, namespace="test", phase="Succeeded")] == 1
