"""Human commands, as updates (the CLI's path: accepted or refused at once) and as signals (the Web UI's path)."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from canaryflow.client import send_command
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import Running, advance_until, canary, messages, request, running_release
from workflows.model import Command

pytestmark = pytest.mark.workflow

PROMOTED = [(80, 20, False), (60, 40, False), (40, 60, False), (100, 0, False)]
UPDATE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
}


def manual_gate(gate: str) -> dict[str, object]:
    return {"webhooks": [{"name": "release-manager", "type": gate, "url": "manual"}]}


async def refused(run: Running, kind: str, command: Command) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await send_command(run.handle, kind, command)
    return str(failure.value.cause)


async def update_events(run: Running) -> list[int]:
    history = await run.handle.fetch_history()
    return [event.event_type for event in history.events if event.event_type in UPDATE_EVENTS]


async def test_approve_or_reject_without_a_waiting_gate_is_refused_and_leaves_no_trace(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 20)
        before = await run.state()
        assert "no gate is waiting for approval (phase Progressing)" in await refused(
            run, "approve", Command(identity="alice")
        )
        assert "no gate is waiting" in await refused(run, "reject", Command(identity="alice", reason="nope"))
        after = await run.state()
        assert after.decisions == before.decisions
        assert await update_events(run) == []
        result = await run.handle.result()
    assert result.phase == "Succeeded"
    assert platform.route_history == PROMOTED


async def test_reject_of_a_waiting_gate_rolls_back_with_reason_and_identity(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary(manual_gate("confirm-rollout")))) as run:
        await advance_until(run, lambda s: s.waiting_gates == ["confirm-rollout"])
        answer = await send_command(run.handle, "reject", Command(identity="bob", reason="wrong build"))
        assert answer.accepted and answer.message == "confirm-rollout rejected"
        failure = await run.rolled_back()
        state = await run.state()
        phases = await run.phases()
    assert failure.message == state.outcome == "Gate confirm-rollout rejected by bob: wrong build"
    assert phases == ["Initializing", "Initialized", "Waiting", "Failed"]
    assert ("confirm-rollout rejected: wrong build", "bob") in [(x.message, x.actor) for x in state.decisions]
    assert state.waiting_gates == []
    assert platform.route_history == [(100, 0, False)]
    assert platform.canary_replicas == 0


async def test_abort_rolls_back(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 40)
        answer = await send_command(run.handle, "abort", Command(identity="carol", reason="pager is ringing"))
        assert answer.accepted
        failure = await run.rolled_back()
        state = await run.state()
        phases = await run.phases()
    assert failure.message == state.outcome == "Aborted by carol: pager is ringing"
    assert phases == ["Initializing", "Initialized", "Progressing", "Failed"]
    assert (state.phase, state.canary_weight, state.failed_checks) == ("Failed", 0, 0)
    assert platform.route_history == [(80, 20, False), (60, 40, False), (100, 0, False)]
    assert platform.canary_replicas == 0
    assert ("abort requested: rolling back: pager is ringing", "carol") in [
        (x.message, x.actor) for x in state.decisions
    ]


async def test_pause_freezes_the_analysis_until_resume(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 20)
        answer = await send_command(run.handle, "pause", Command(identity="dave", reason="investigating"))
        assert answer.accepted and answer.message == "release paused"
        metrics_before = dict(platform.metric_calls)
        await time_skipping_env.sleep(5 * 60)
        paused = await run.state()
        assert (paused.paused, paused.paused_by, paused.canary_weight, paused.failed_checks) == (True, "dave", 20, 0)
        assert platform.route_history == [(80, 20, False)]
        assert platform.metric_calls == metrics_before
        assert "already paused by dave" in await refused(run, "pause", Command(identity="erin"))
        # Accepted updates are in the history, refused ones are not.
        assert await update_events(run) == [
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
        ]
        assert (await send_command(run.handle, "resume", Command(identity="dave"))).accepted
        assert "release is not paused" in await refused(run, "resume", Command(identity="dave"))
        result = await run.handle.result()
        state = await run.state()
    assert result.phase == "Succeeded"
    assert platform.route_history == PROMOTED
    assert not state.paused
    commands = [(x.message, x.actor) for x in state.decisions if x.kind == "command"]
    assert commands == [("release paused: investigating", "dave"), ("release resumed", "dave")]


async def test_abort_while_paused_rolls_back_without_waiting_an_interval(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 20)
        await send_command(run.handle, "pause", Command(identity="dave"))
        await time_skipping_env.sleep(2 * 60)
        await send_command(run.handle, "abort", Command(identity="dave", reason="bad build"))
        state = await advance_until(run, lambda s: s.phase == "Failed", step_seconds=1, limit_seconds=10)
        await run.rolled_back()
    assert state.outcome == "Aborted by dave: bad build"
    assert platform.route_history == [(80, 20, False), (100, 0, False)]


async def test_promote_skips_the_remaining_analysis(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 20)
        answer = await send_command(run.handle, "promote", Command(identity="erin", reason="hotfix"))
        assert answer.accepted
        result = await run.handle.result()
        state = await run.state()
        phases = await run.phases()
    assert result.phase == "Succeeded"
    assert phases == ["Initializing", "Initialized", "Progressing", "Promoting", "Finalising", "Succeeded"]
    assert platform.route_history == [(80, 20, False), (100, 0, False)]
    assert platform.metric_calls == {}  # only the pre-rollout tick ran
    assert platform.primary_revision == "rev-2"
    assert ("Promotion forced, remaining analysis skipped: hotfix", "erin") in [
        (x.message, x.actor) for x in state.decisions
    ]


async def test_commands_work_as_signals(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary(manual_gate("confirm-promotion")))) as run:
        await advance_until(run, lambda s: s.canary_weight == 20)
        await run.handle.signal("pause", Command(identity="ui-user"))
        paused = await advance_until(run, lambda s: s.paused)
        await time_skipping_env.sleep(3 * 60)
        assert platform.route_history == [(80, 20, False)]
        # A refused signal changes nothing; the decision log says why.
        await run.handle.signal("approve", Command(identity="ui-user"))
        await run.handle.signal("resume", Command(identity="ui-user"))
        await advance_until(run, lambda s: s.phase == "WaitingPromotion")
        await run.handle.signal("approve", Command(identity="ui-user", reason="ship it"))
        result = await run.handle.result()
        state = await run.state()
    assert paused.paused_by == "ui-user"
    assert result.phase == "Succeeded"
    assert platform.route_history == PROMOTED
    assert [(x.message, x.actor) for x in state.decisions if x.kind in ("command", "gate")] == [
        ("release paused", "ui-user"),
        ("approve ignored: no gate is waiting for approval (phase Progressing)", "ui-user"),
        ("release resumed", "ui-user"),
        ("confirm-promotion approved: ship it", "ui-user"),
        ("confirm-promotion approved: ship it", "ui-user"),
    ]
    assert "Rolling back" not in " ".join(messages(state))


async def test_abort_and_pause_are_refused_once_the_promotion_is_under_way(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    spec = canary({"stepWeightPromotion": 20})  # traffic shifts back to primary over several intervals
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        await advance_until(run, lambda s: s.phase == "Promoting" and s.canary_weight == 40)
        # The primary already runs the new revision: there is nothing left to roll back to.
        assert "cannot abort in phase Promoting" in await refused(run, "abort", Command(identity="carol"))
        assert "cannot pause in phase Promoting" in await refused(run, "pause", Command(identity="carol"))
        result = await run.handle.result()
        state = await run.state()
    assert result.phase == "Succeeded"
    assert platform.route_history == [*PROMOTED[:3], (60, 40, False), (80, 20, False), (100, 0, False)]
    assert [x for x in state.decisions if x.kind == "command"] == []
