"""A release follows its canary's revisions, and long releases continue-as-new without losing or repeating a step."""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from canaryflow.client import send_command, start_release
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import advance_until, canary, messages, request, running_release
from workflows.model import Command

pytestmark = pytest.mark.workflow

SUCCESS_PHASES = ["Initializing", "Initialized", "Progressing", "Promoting", "Finalising", "Succeeded"]
PROMOTED = [(80, 20, False), (60, 40, False), (40, 60, False), (100, 0, False)]


def revisions(platform: FakePlatform, activity: str) -> list[str]:
    return [arg for name, arg in platform.calls if name == activity]


async def test_new_revision_mid_analysis_restarts_at_weight_zero(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 40)
        again = await start_release(
            time_skipping_env.client, run.request.model_copy(update={"revision": "rev-3"}), task_queue=run.task_queue
        )
        assert again.workflow_id == run.started.workflow_id
        assert again.run_id == run.started.run_id  # delivered to the running release, not a second one
        result = await run.handle.result()
        state = await run.state()
    assert (result.phase, result.revision, result.failed_checks) == ("Succeeded", "rev-3", 0)
    assert platform.route_history == [(80, 20, False), (60, 40, False), (100, 0, False), *PROMOTED]
    assert platform.primary_revision == "rev-3"
    assert revisions(platform, c.ACT_WORKLOAD_INITIALIZE) == ["rev-2", "rev-3"]
    assert revisions(platform, c.ACT_WORKLOAD_PROMOTE) == ["rev-3"]
    assert "New revision detected! Restarting analysis" in messages(state, "event")
    assert ("new revision rev-3 received", "ci") in [(x.message, x.actor) for x in state.decisions]
    # One release: the restart is not a second initialization.
    assert [m for m in messages(state, "phase")] == [f"phase {p}" for p in SUCCESS_PHASES]


async def test_same_revision_again_changes_nothing(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 20)
        before = await run.state()
        again = await start_release(time_skipping_env.client, run.request, task_queue=run.task_queue)
        assert again.run_id == run.started.run_id
        await time_skipping_env.sleep(1)
        assert (await run.state()).decisions == before.decisions
        result = await run.handle.result()
    assert (result.phase, result.revision) == ("Succeeded", "rev-2")
    assert platform.route_history == PROMOTED
    assert revisions(platform, c.ACT_WORKLOAD_INITIALIZE) == ["rev-2"]


async def test_new_revision_after_completion_starts_a_new_run(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        assert (await run.handle.result()).phase == "Succeeded"
        following = await start_release(
            time_skipping_env.client, run.request.model_copy(update={"revision": "rev-3"}), task_queue=run.task_queue
        )
        assert following.workflow_id == run.started.workflow_id
        assert following.run_id != run.started.run_id
        result = await following.handle.result()
        state = await run.state()  # the latest run of the workflow id
    assert (result.phase, result.revision) == ("Succeeded", "rev-3")
    assert platform.route_history == PROMOTED + PROMOTED
    assert platform.primary_revision == "rev-3"
    assert (state.revision, state.runs) == ("rev-3", 1)


async def test_long_release_continues_as_new_without_losing_or_repeating_a_step(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    spec = canary({"stepWeight": 5})  # maxWeight 50: ten steps
    async with running_release(time_skipping_env, platform, request(spec, history_event_limit=150)) as run:
        result = await run.handle.result()
        state = await run.state()
        phases = await run.phases()
    assert result.phase == "Succeeded"
    assert state.runs > 1
    weights = list(range(5, 55, 5))
    assert platform.route_history == [(100 - w, w, False) for w in weights] + [(100, 0, False)]
    name = run.request.canary.metadata.name
    advances = [m for m in messages(state, "event") if m.startswith(f"Advance {name}.test canary weight")]
    assert advances == [f"Advance {name}.test canary weight {w}" for w in weights]
    assert phases == SUCCESS_PHASES
    assert platform.metric_calls == {"request-success-rate": 10, "request-duration": 10}


@pytest.mark.parametrize(("gate", "phase"), [("confirm-rollout", "Waiting"), ("confirm-promotion", "WaitingPromotion")])
async def test_release_waiting_at_a_gate_continues_as_new_and_still_takes_the_approval(
    time_skipping_env: WorkflowEnvironment, gate: str, phase: str
) -> None:
    platform = FakePlatform()
    spec = canary({"webhooks": [{"name": "release-manager", "type": gate, "url": "manual"}]})
    async with running_release(time_skipping_env, platform, request(spec, history_event_limit=150)) as run:
        await advance_until(run, lambda s: s.phase == phase)
        # Waiting for days must not grow one history without bound.
        waiting = await advance_until(run, lambda s: s.runs > 1, step_seconds=60, limit_seconds=60 * 60)
        assert (waiting.phase, waiting.waiting_gates) == (phase, [gate])
        answer = await send_command(run.handle, "approve", Command(identity="alice"))
        assert answer.accepted
        result = await run.handle.result()
        state = await run.state()
    assert result.phase == "Succeeded"
    assert platform.route_history == PROMOTED
    assert [(x.message, x.actor) for x in state.decisions if x.kind == "gate"] == [(f"{gate} approved", "alice")]
