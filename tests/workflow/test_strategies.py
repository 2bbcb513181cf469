"""Each strategy runs to Succeeded with Flagger's weights, phases and order of side effects."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import canary, request, running_release

pytestmark = pytest.mark.workflow

SUCCESS_PHASES = ["Initializing", "Initialized", "Progressing", "Promoting", "Finalising", "Succeeded"]


async def test_canary_step_weight_overshoots_max_then_promotes(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        result = await run.handle.result()
        assert result.phase == "Succeeded"
        # stepWeight 20, maxWeight 50: 20, 40, 60 (Flagger overshoots), then all traffic back to primary.
        assert platform.route_history == [(80, 20, False), (60, 40, False), (40, 60, False), (100, 0, False)]
        assert await run.phases() == SUCCESS_PHASES
        names = platform.names()
        # The primary gets the canary's spec before traffic shifts back, and the canary scales down last.
        assert names.index(c.ACT_WORKLOAD_PROMOTE) < len(names) - 1 - names[::-1].index(c.ACT_ROUTER_SET_ROUTES)
        assert names[-1] == c.ACT_WORKLOAD_SCALE_TO_ZERO
        assert platform.primary_revision == "rev-2"
        assert platform.canary_replicas == 0
        # Metrics ran on every analysis tick after the first (pre-rollout) tick: 3 ticks x 2 metrics.
        assert platform.metric_calls == {"request-success-rate": 3, "request-duration": 3}
        state = await run.state()
        assert (state.canary_weight, state.primary_weight, state.failed_checks) == (0, 100, 0)


async def test_step_weights_follow_the_list(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    spec = canary({"stepWeights": [1, 2, 10, 80]}, drop=("stepWeight", "maxWeight"))
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        assert (await run.handle.result()).phase == "Succeeded"
    assert platform.canary_weights() == [1, 2, 10, 80, 0]


async def test_ab_testing_routes_matching_traffic_for_each_iteration(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    spec = canary(
        {"iterations": 3, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]},
        drop=("stepWeight", "maxWeight"),
    )
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        result = await run.handle.result()
        state = await run.state()
    assert result.phase == "Succeeded"
    assert state.strategy == "ab-testing"
    assert platform.route_history == [(0, 100, False)] * 3 + [(100, 0, False)]
    assert platform.metric_calls["request-success-rate"] == 3


async def test_blue_green_switches_all_traffic_after_the_iterations(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    spec = canary({"iterations": 3}, drop=("stepWeight", "maxWeight"))
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        result = await run.handle.result()
        phases = await run.phases()
    assert result.phase == "Succeeded"
    assert phases == SUCCESS_PHASES
    # Iterations 1..3 keep traffic on primary (no route writes); then all to canary; promotion brings it back.
    assert platform.route_history == [(0, 100, False), (100, 0, False)]
    # 3 iterations + the tick that routes to canary + the promoting tick, minus the pre-rollout tick.
    assert platform.metric_calls["request-success-rate"] == 4


async def test_blue_green_mirroring_mirrors_then_switches(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    spec = canary({"iterations": 2, "mirror": True, "mirrorWeight": 100}, drop=("stepWeight", "maxWeight"))
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        assert (await run.handle.result()).phase == "Succeeded"
    assert platform.route_history == [(100, 0, True), (0, 100, False), (100, 0, False)]


async def test_canary_mirroring_first_step_mirrors_only(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    spec = canary({"mirror": True, "maxWeight": 40})
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        assert (await run.handle.result()).phase == "Succeeded"
    assert platform.route_history == [(100, 0, True), (80, 20, False), (60, 40, False), (100, 0, False)]


async def test_step_weight_promotion_shifts_primary_back_gradually(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    spec = canary({"stepWeightPromotion": 25})
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        assert (await run.handle.result()).phase == "Succeeded"
    assert platform.route_history[3:] == [(65, 35, False), (90, 10, False), (100, 0, False)]


async def test_skip_analysis_promotes_without_checks(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary(skipAnalysis=True))) as run:
        result = await run.handle.result()
        phases = await run.phases()
    assert result.phase == "Succeeded"
    assert result.message == "Canary analysis was skipped, promotion finished."
    assert platform.metric_calls == {}
    assert platform.route_history == [(100, 0, False)]
    assert c.ACT_WORKLOAD_PROMOTE in platform.names()
    assert phases == ["Initializing", "Initialized", "Progressing", "Promoting", "Finalising", "Succeeded"]


async def test_search_attributes_and_details_track_the_release(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await run.handle.result()
        description = await run.handle.describe()
    from canaryflow import shared

    attrs = description.typed_search_attributes
    assert attrs.get(shared.SA_PHASE) == "Succeeded"
    assert attrs.get(shared.SA_WEIGHT) == 0
    assert attrs.get(shared.SA_REVISION) == "rev-2"
    assert attrs.get(shared.SA_STRATEGY) == "canary"
    assert attrs.get(shared.SA_NAMESPACE) == "test"
    assert (attrs.get(shared.SA_NAME) or "").startswith("podinfo-")
