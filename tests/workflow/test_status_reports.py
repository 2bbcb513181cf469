"""Status reports (Canary status, Events, worker metrics) follow the release in order; first sight initializes only."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import canary, request, running_release

pytestmark = pytest.mark.workflow


async def test_reports_follow_every_phase_and_weight_in_order(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        result = await run.handle.result()
        state = await run.state()
    assert result.phase == "Succeeded"
    reports = platform.reports
    assert [r.sequence for r in reports] == list(range(1, len(reports) + 1))
    assert all(r.workflow_id == run.handle.id for r in reports)
    # Coalesced, but no phase is skipped by the time the release ends, and the last report is final.
    assert reports[-1].finished and reports[-1].phase == "Succeeded"
    assert (reports[-1].primary_weight, reports[-1].canary_weight) == (100, 0)
    assert not any(r.finished for r in reports[:-1])
    seen_weights = {r.canary_weight for r in reports}
    assert {20, 40, 60}.issubset(seen_weights)
    # Every decision is reported exactly once, in order, with its stable index.
    indexes = [d.index for r in reports for d in r.new_decisions]
    assert indexes == list(range(len(state.decisions)))
    assert [d.message for r in reports for d in r.new_decisions] == [d.message for d in state.decisions]
    first = reports[0]
    assert (first.platform, first.provider, first.target_kind) == ("kubernetes", "istio", "Deployment")
    assert first.canary_api_version == "flagger.app/v1beta1"
    assert state.status_sequence == len(reports)


async def test_a_rolled_back_release_reports_failed_last(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(metric=lambda name, n: 50.0 if name == "request-success-rate" else 100.0)
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await run.rolled_back()
    final = platform.reports[-1]
    assert final.finished and final.phase == "Failed"
    assert final.failed_checks >= 1 and final.canary_weight == 0
    assert any(d.kind == "warning" and "Rolling back" in d.message for r in platform.reports for d in r.new_decisions)


async def test_first_sight_of_a_canary_stops_at_initialized(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(initialize_result=c.InitializeResult(needs_analysis=False, primary_bootstrapped=True))
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        result = await run.handle.result()
        phases = await run.phases()
    assert result.phase == "Initialized"
    assert phases == ["Initializing", "Initialized"]
    # Nothing beyond bootstrap and routing: no scale-up, no traffic shift, no metric.
    assert platform.names() == [c.ACT_WORKLOAD_INITIALIZE, c.ACT_ROUTER_RECONCILE]
    assert platform.reports[-1].finished and platform.reports[-1].phase == "Initialized"


async def test_a_target_that_differs_from_the_primary_is_analysed(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(initialize_result=c.InitializeResult(needs_analysis=True, primary_bootstrapped=True))
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        assert (await run.handle.result()).phase == "Succeeded"
