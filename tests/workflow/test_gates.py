"""Flagger's webhook gates and hooks against a real HTTP receiver: what each answer does to the release."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from canaryflow import shared
from canaryflow.client import send_command
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import (
    advance_until,
    canary,
    hook_server,
    messages,
    request,
    running_release,
    webhook,
)
from workflows import decisions as d
from workflows.model import Command

pytestmark = pytest.mark.workflow

SUCCESS_PHASES = ["Initializing", "Initialized", "Progressing", "Promoting", "Finalising", "Succeeded"]
STEPS = [(80, 20, False), (60, 40, False), (40, 60, False)]  # stepWeight 20 up to maxWeight 50 (overshoots)
PROMOTED = [*STEPS, (100, 0, False)]
PAYLOAD_KEYS = {"name", "namespace", "phase", "checksum", "metadata"}
CHECKSUM = d.revision_checksum("rev-2")


def hooks_spec(*hooks: dict[str, Any], **analysis: Any) -> Any:
    return canary({"webhooks": list(hooks), **analysis})


# ----------------------------------------------------------------------------------------------------------------
# confirm-rollout


async def test_confirm_rollout_pass_starts_the_analysis(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        spec = hooks_spec(webhook("approve", "confirm-rollout", hooks.url("gate"), metadata={"team": "web"}))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            result = await run.handle.result()
            state = await run.state()
            phases = await run.phases()
        assert result.phase == "Succeeded"
        assert phases == SUCCESS_PHASES
        assert platform.route_history == PROMOTED
        assert "confirm-rollout" not in " ".join(messages(state, "gate"))
        # Asked once, before the canary was scaled up, in the phase the release was in at that moment.
        assert hooks.payloads("gate") == [
            {
                "name": run.request.canary.metadata.name,
                "namespace": "test",
                "phase": "Initialized",
                "checksum": CHECKSUM,
                "metadata": {"team": "web"},
            }
        ]


async def test_confirm_rollout_refusal_waits_without_failed_checks_until_it_passes(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("gate", 403, body="closed")
        spec = hooks_spec(webhook("approve", "confirm-rollout", hooks.url("gate")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            waiting = await advance_until(run, lambda s: s.phase == "Waiting", step_seconds=1)
            assert waiting.waiting_gates == ["confirm-rollout"]
            await time_skipping_env.sleep(3 * 60 + 30)
            still = await run.state()
            assert (still.phase, still.failed_checks, still.canary_weight) == ("Waiting", 0, 0)
            assert platform.canary_replicas == 0 and platform.route_history == []
            assert len(hooks.calls("gate")) == 4  # asked again every interval
            hooks.answer("gate", 200)
            result = await run.handle.result()
            state = await run.state()
            phases = await run.phases()
    assert result.phase == "Succeeded" and result.failed_checks == 0
    assert phases == ["Initializing", "Initialized", "Waiting", *SUCCESS_PHASES[2:]]
    assert platform.route_history == PROMOTED
    assert state.waiting_gates == []
    assert "Halt advancement: waiting for approval approve (closed)" in messages(state, "gate")


async def test_confirm_rollout_timeout_counts_as_refusal(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("gate", 200, delay_seconds=3)  # longer than the hook's 1s timeout
        spec = hooks_spec(webhook("approve", "confirm-rollout", hooks.url("gate")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            waiting = await advance_until(run, lambda s: s.phase == "Waiting", step_seconds=1)
            assert waiting.failed_checks == 0 and platform.route_history == []
            assert any("timed out after 1s" in m for m in messages(waiting, "gate"))
            hooks.answer("gate", 200)
            result = await run.handle.result()
    assert result.phase == "Succeeded"
    assert platform.route_history == PROMOTED


# ----------------------------------------------------------------------------------------------------------------
# pre-rollout, rollout


async def test_pre_rollout_failure_is_retried_each_tick_until_the_threshold_rolls_back(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("pre", 500, body="smoke tests failed")
        spec = hooks_spec(webhook("smoke", "pre-rollout", hooks.url("pre")))  # threshold 2
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            failure = await run.rolled_back()
            state = await run.state()
            phases = await run.phases()
    assert failure.message == "Failed checks threshold reached 2"
    assert (state.phase, state.failed_checks, state.outcome) == ("Failed", 2, "Failed checks threshold reached 2")
    assert phases == ["Initializing", "Initialized", "Progressing", "Failed"]
    # Retried on each tick while no traffic reached the canary; never a metric query instead.
    assert [p["phase"] for p in hooks.payloads("pre")] == ["Progressing", "Progressing"]
    assert platform.metric_calls == {}
    assert platform.route_history == [(100, 0, False)]
    assert platform.canary_replicas == 0
    halted = "Halt advancement: pre-rollout check smoke failed: "
    halted += "giving up after 1 attempt(s): HTTP 500: smoke tests failed"
    assert messages(state, "warning").count(halted) == 2


async def test_rollout_hook_failure_is_a_failed_check_and_holds_the_weight(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("load", 400, body="error rate too high")
        # An untyped hook is a rollout hook, as in Flagger.
        spec = hooks_spec({"name": "load-test", "url": hooks.url("load"), "timeout": "1s"})
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            failed = await advance_until(run, lambda s: s.failed_checks == 1)
            assert (failed.phase, failed.canary_weight) == ("Progressing", 20)
            hooks.answer("load", 200)
            result = await run.handle.result()
            state = await run.state()
    assert result.phase == "Succeeded" and result.failed_checks == 1
    # The failing tick neither stepped nor queried metrics; the next ticks went on from 20.
    assert platform.route_history == PROMOTED
    assert platform.metric_calls == {"request-success-rate": 3, "request-duration": 3}
    assert [p["phase"] for p in hooks.payloads("load")] == ["Progressing"] * 4
    assert "Halt advancement: rollout check load-test failed: error rate too high" in messages(state, "warning")


# ----------------------------------------------------------------------------------------------------------------
# confirm-traffic-increase, confirm-promotion


async def test_confirm_traffic_increase_refusal_holds_the_weight_without_failed_checks(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        spec = hooks_spec(webhook("more-traffic", "confirm-traffic-increase", hooks.url("more")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            await advance_until(run, lambda s: s.canary_weight == 20)
            hooks.answer("more", 403)
            await advance_until(run, lambda s: s.waiting_gates == ["confirm-traffic-increase"])
            queried = platform.metric_calls["request-success-rate"]
            await time_skipping_env.sleep(3 * 60 + 30)  # mid-interval: exactly three more ticks
            held = await run.state()
            assert (held.phase, held.canary_weight, held.failed_checks) == ("Progressing", 20, 0)
            assert platform.route_history == [(80, 20, False)]
            # The analysis keeps running while the gate holds the weight.
            assert platform.metric_calls["request-success-rate"] == queried + 3
            hooks.answer("more", 200)
            result = await run.handle.result()
    assert result.phase == "Succeeded" and result.failed_checks == 0
    assert platform.route_history == PROMOTED
    assert {p["phase"] for p in hooks.payloads("more")} == {"Progressing"}


async def test_confirm_promotion_refusal_waits_in_waiting_promotion_until_approved(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("promote", 403)
        spec = hooks_spec(webhook("promotion", "confirm-promotion", hooks.url("promote")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            waiting = await advance_until(run, lambda s: s.phase == "WaitingPromotion")
            assert waiting.waiting_gates == ["confirm-promotion"]
            queried = platform.metric_calls["request-success-rate"]
            await time_skipping_env.sleep(3 * 60 + 30)  # mid-interval: exactly three more ticks
            # Analysis continues every interval; traffic stays where the last step put it.
            assert platform.metric_calls["request-success-rate"] == queried + 3
            assert platform.route_history == STEPS
            answer = await send_command(run.handle, "approve", Command(identity="alice", reason="dashboards green"))
            assert answer.accepted and answer.phase == "WaitingPromotion"
            result = await run.handle.result()
            state = await run.state()
            phases = await run.phases()
    assert result.phase == "Succeeded"
    assert phases == ["Initializing", "Initialized", "Progressing", "WaitingPromotion", *SUCCESS_PHASES[3:]]
    assert platform.route_history == PROMOTED
    approvals = [x for x in state.decisions if x.kind == "gate" and "approved" in x.message]
    assert [(x.message, x.actor) for x in approvals] == [("confirm-promotion approved: dashboards green", "alice")]


async def test_manual_promotion_gate_waits_for_approve(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    spec = hooks_spec({"name": "release-manager", "type": "confirm-promotion", "url": "manual"})
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        waiting = await advance_until(run, lambda s: s.phase == "WaitingPromotion")
        await time_skipping_env.sleep(5 * 60)
        assert (await run.state()).waiting_gates == ["confirm-promotion"]
        attributes = (await run.handle.describe()).typed_search_attributes
        assert attributes.get(shared.SA_PHASE) == "WaitingPromotion"
        assert platform.route_history == STEPS
        await send_command(run.handle, "approve", Command(identity="alice"))
        result = await run.handle.result()
        attributes = (await run.handle.describe()).typed_search_attributes
    assert waiting.waiting_gates == ["confirm-promotion"]
    assert result.phase == "Succeeded"
    assert attributes.get(shared.SA_PHASE) == "Succeeded"
    assert platform.route_history == PROMOTED


# ----------------------------------------------------------------------------------------------------------------
# rollback, post-rollout, event


async def test_rollback_webhook_success_rolls_back_at_once(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("rollback", 404)  # anything but success: no rollback asked
        spec = hooks_spec(webhook("manual-rollback", "rollback", hooks.url("rollback")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            await advance_until(run, lambda s: s.canary_weight == 20)
            hooks.answer("rollback", 200)
            failure = await run.rolled_back()
            state = await run.state()
    assert failure.message == "Rolling back manual webhook invoked"
    assert (state.phase, state.failed_checks, state.canary_weight) == ("Failed", 0, 0)
    assert platform.route_history == [(80, 20, False), (100, 0, False)]
    assert platform.canary_replicas == 0
    assert [p["phase"] for p in hooks.payloads("rollback")] == ["Progressing", "Progressing"]
    name = run.request.canary.metadata.name
    assert f"Rolling back {name}.test manual webhook invoked" in messages(state, "warning")


async def test_post_rollout_hook_hears_succeeded(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        spec = hooks_spec(webhook("notify", "post-rollout", hooks.url("post")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            assert (await run.handle.result()).phase == "Succeeded"
        assert [p["phase"] for p in hooks.payloads("post")] == ["Succeeded"]


async def test_post_rollout_hook_hears_failed(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(metric=lambda name, n: 50.0 if name == "request-success-rate" else 100.0)
    with hook_server() as hooks:
        spec = hooks_spec(webhook("notify", "post-rollout", hooks.url("post")))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            await run.rolled_back()
        assert [p["phase"] for p in hooks.payloads("post")] == ["Failed"]
        assert platform.canary_replicas == 0


async def test_event_hooks_receive_flaggers_event_payload(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(metric=lambda name, n: 50.0 if name == "request-success-rate" else 100.0)
    with hook_server() as hooks:
        # User metadata is passed along but never overrides the event fields.
        spec = hooks_spec(
            webhook("events", "event", hooks.url("events"), metadata={"env": "test", "eventType": "spoofed"}),
            threshold=1,
        )
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            await run.rolled_back()
            name = run.request.canary.metadata.name
        payloads = hooks.payloads("events")
    assert all(set(p) == PAYLOAD_KEYS and p["name"] == name and p["checksum"] == CHECKSUM for p in payloads)
    events = [(p["metadata"]["eventType"], p["metadata"]["eventMessage"]) for p in payloads]
    assert events == [
        ("Normal", f"Initialization done! {name}.test"),
        ("Normal", "New revision detected! Scaling up podinfo.test"),
        ("Normal", "Starting canary analysis for podinfo.test"),
        ("Normal", f"Advance {name}.test canary weight 20"),
        ("Warning", f"Rolling back {name}.test failed checks threshold reached 1"),
        ("Warning", "Canary failed! Scaling down podinfo.test"),
    ]
    assert all(p["metadata"]["env"] == "test" for p in payloads)
    stamps = [int(p["metadata"]["timestamp"]) for p in payloads]
    # Virtual unix milliseconds: one analysis interval passes before the failing check rolls back.
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 60 * 1000
    # Flagger sends an event in the phase the release is in: the rollback events precede the Failed status.
    assert [p["phase"] for p in payloads] == ["Initialized"] * 2 + ["Progressing"] * 4


async def test_every_webhook_payload_is_flaggers(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    types = ["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion"]
    types += ["post-rollout", "rollback", "event"]
    with hook_server() as hooks:
        hooks.answer("rollback", 403)
        spec = hooks_spec(*(webhook(t, t, hooks.url(t), metadata={"hook": t}) for t in types))
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            assert (await run.handle.result()).phase == "Succeeded"
            name = run.request.canary.metadata.name
        requests = hooks.receiver.requests
    assert {r.path.lstrip("/") for r in requests} == set(types)
    for recorded in requests:
        assert recorded.method == "POST"
        assert recorded.header("content-type") == "application/json"
        payload = recorded.json
        assert set(payload) == PAYLOAD_KEYS
        assert (payload["name"], payload["namespace"], payload["checksum"]) == (name, "test", CHECKSUM)
        assert payload["metadata"]["hook"] == recorded.path.lstrip("/")
    phases = {t: {p["phase"] for p in hooks.payloads(t)} for t in types if t != "event"}
    assert phases == {
        "confirm-rollout": {"Initialized"},
        "pre-rollout": {"Progressing"},
        "rollout": {"Progressing"},
        "confirm-traffic-increase": {"Progressing"},
        "confirm-promotion": {"Progressing"},
        "post-rollout": {"Succeeded"},
        "rollback": {"Progressing"},
    }
