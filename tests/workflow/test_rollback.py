"""Every way a release ends badly runs the same rollback: all traffic to primary, canary scaled to zero, Failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from tests.workflow.fakes import FakePlatform, MetricScript
from tests.workflow.harness import (
    Running,
    advance_until,
    canary,
    hook_server,
    messages,
    request,
    running_release,
    slack_provider,
    webhook,
)

pytestmark = pytest.mark.workflow

ROLLED_BACK = (100, 0, False)
HEALTHY = 99.9


def success_rate(*values: float | None) -> MetricScript:
    """Script the success rate per query (then healthy); the duration is always fine."""

    def script(name: str, call: int) -> float | None:
        if name != "request-success-rate":
            return 100.0
        return values[call - 1] if call <= len(values) else HEALTHY

    return script


def assert_rolled_back(platform: FakePlatform) -> None:
    assert platform.route_history[-1] == ROLLED_BACK
    assert platform.canary_replicas == 0
    assert platform.names()[-1] == c.ACT_WORKLOAD_SCALE_TO_ZERO


# ----------------------------------------------------------------------------------------------------------------
# failed checks


@pytest.mark.parametrize(
    ("threshold", "rates", "routes"),
    [
        # The first failing analysis tick reaches threshold 1; the next tick rolls back.
        (1, (50.0,), [(80, 20, False)]),
        # Failures are cumulative: a pass in between (which steps to 40) does not reset the count.
        (3, (50.0, HEALTHY, 50.0, 50.0), [(80, 20, False), (60, 40, False)]),
    ],
)
async def test_failed_checks_threshold_rolls_back(
    time_skipping_env: WorkflowEnvironment,
    threshold: int,
    rates: tuple[float, ...],
    routes: list[tuple[int, int, bool]],
) -> None:
    platform = FakePlatform(metric=success_rate(*rates))
    spec = canary({"threshold": threshold})
    async with running_release(time_skipping_env, platform, request(spec)) as run:
        failure = await run.rolled_back()
        state = await run.state()
        phases = await run.phases()
    reason = f"Failed checks threshold reached {threshold}"
    assert failure.message == state.outcome == reason
    assert (state.phase, state.failed_checks, state.canary_weight) == ("Failed", threshold, 0)
    assert phases == ["Initializing", "Initialized", "Progressing", "Failed"]
    assert platform.route_history == [*routes, ROLLED_BACK]
    assert_rolled_back(platform)
    assert platform.metric_calls["request-success-rate"] == len(rates)
    assert messages(state, "warning").count("request-success-rate: Halt advancement success rate 50.00% < 99.00%") == (
        threshold
    )


async def test_no_values_is_a_failed_check(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(metric=lambda name, n: None if name == "request-duration" else HEALTHY)
    async with running_release(time_skipping_env, platform, request(canary({"threshold": 1}))) as run:
        failure = await run.rolled_back()
        state = await run.state()
    assert failure.message == "Failed checks threshold reached 1"
    assert state.last_metrics == {"request-success-rate": HEALTHY, "request-duration": None}
    assert (
        "request-duration: Halt advancement no values found for metric request-duration "
        "probably podinfo.test is not receiving traffic"
    ) in messages(state, "warning")
    assert_rolled_back(platform)


# ----------------------------------------------------------------------------------------------------------------
# cancellation


async def assert_cancelled(run: Running) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await run.handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert (await run.handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_cancel_mid_analysis_rolls_back_and_ends_cancelled(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        await advance_until(run, lambda s: s.canary_weight == 40)
        await run.handle.cancel(reason="operator stop")
        await assert_cancelled(run)
        state = await run.state()
        phases = await run.phases()
    assert (state.phase, state.outcome) == ("Failed", "Release cancelled: operator stop")
    assert phases == ["Initializing", "Initialized", "Progressing", "Failed"]
    assert platform.route_history == [(80, 20, False), (60, 40, False), ROLLED_BACK]
    assert_rolled_back(platform)


async def test_cancel_during_a_webhook_call_rolls_back_and_ends_cancelled(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("load", 200, delay_seconds=1)
        # The test server's clock stays locked if a cancelled activity completes after its workflow closed: a slow
        # post-rollout hook keeps the release open until the abandoned rollout hook call has answered.
        hooks.answer("post", 200, delay_seconds=2)
        spec = canary(
            {
                "webhooks": [
                    webhook("load-test", "rollout", hooks.url("load"), timeout="5s"),
                    webhook("notify", "post-rollout", hooks.url("post"), timeout="5s"),
                ]
            }
        )
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            outcome = asyncio.ensure_future(run.handle.result())
            async with asyncio.timeout(10):
                while not hooks.calls("load"):  # the first rollout hook call is in flight
                    await asyncio.sleep(0.02)
            await run.handle.cancel(reason="operator stop")
            hooks.answer("load", 200)
            with pytest.raises(WorkflowFailureError) as failure:
                await outcome
            assert isinstance(failure.value.cause, CancelledError)
            state = await run.state()
    assert (state.phase, state.outcome, state.failed_checks) == ("Failed", "Release cancelled: operator stop", 0)
    assert platform.route_history == [(80, 20, False), ROLLED_BACK]
    assert_rolled_back(platform)


# ----------------------------------------------------------------------------------------------------------------
# progress deadline


async def test_stuck_canary_rollout_rolls_back(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(stuck={"canary"})
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        failure = await run.rolled_back()
        state = await run.state()
        phases = await run.phases()
    assert failure.message == (
        "Progress deadline exceeded: canary not ready (canary rollout exceeded its progress deadline)"
    )
    assert phases == ["Initializing", "Initialized", "Progressing", "Failed"]
    assert platform.route_history == [ROLLED_BACK]
    assert_rolled_back(platform)
    name = run.request.canary.metadata.name
    assert f"Rolling back {name}.test {failure.message}" in messages(state, "warning")


async def test_canary_not_ready_past_the_progress_deadline_rolls_back(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(not_ready_polls={"canary": 10_000})
    async with running_release(time_skipping_env, platform, request(canary(progressDeadlineSeconds=30))) as run:
        failure = await run.rolled_back()
        state = await run.state()
    assert failure.message.startswith("Progress deadline exceeded: canary not ready")
    progressing = next(x.at for x in state.decisions if x.message == "phase Progressing")
    failed = next(x.at for x in state.decisions if x.message == "phase Failed")
    # Polled until the deadline (plus the guard's margin), not forever and not less.
    assert 30 <= (failed - progressing).total_seconds() <= 90
    assert platform.ready_polls["canary"] >= 10
    assert platform.route_history == [ROLLED_BACK]
    assert_rolled_back(platform)


async def test_primary_rollout_gets_the_whole_progress_deadline_after_a_long_analysis(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    # The analysis alone lasts longer than the deadline; the primary then takes 40s of it to become ready.
    platform = FakePlatform(not_ready_polls={"primary": 20})
    async with running_release(time_skipping_env, platform, request(canary(progressDeadlineSeconds=120))) as run:
        result = await run.handle.result()
    assert result.phase == "Succeeded"
    assert platform.primary_revision == "rev-2"
    assert platform.route_history[-1] == (100, 0, False)


# ----------------------------------------------------------------------------------------------------------------
# activities that fail for good


def forward_routes_broken(name: str, arg: Any) -> bool:
    return name == c.ACT_ROUTER_SET_ROUTES and arg.routes.canary_weight > 0


@pytest.mark.parametrize(
    ("failure", "broken_step", "routes"),
    [
        ({"fail_when": forward_routes_broken}, c.ACT_ROUTER_SET_ROUTES, [ROLLED_BACK]),
        ({"broken": {c.ACT_WORKLOAD_SCALE_FROM_ZERO}}, c.ACT_WORKLOAD_SCALE_FROM_ZERO, [ROLLED_BACK]),
        (
            {"broken": {c.ACT_WORKLOAD_PROMOTE}},
            c.ACT_WORKLOAD_PROMOTE,
            [(80, 20, False), (60, 40, False), (40, 60, False), ROLLED_BACK],
        ),
    ],
    ids=["set-routes", "scale-from-zero", "promote"],
)
async def test_forward_step_failing_for_good_rolls_back(
    time_skipping_env: WorkflowEnvironment, failure: dict[str, Any], broken_step: str, routes: list[Any]
) -> None:
    platform = FakePlatform(**failure)
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        rolled_back = await run.rolled_back()
        state = await run.state()
    assert rolled_back.message == state.outcome == f"Step failed for good: {broken_step} is broken"
    assert state.phase == "Failed"
    assert platform.route_history == routes
    assert_rolled_back(platform)


async def test_metric_queries_failing_for_good_are_failed_checks(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(broken={c.ACT_METRIC_QUERY})
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        failure = await run.rolled_back()
        state = await run.state()
    assert failure.message == "Failed checks threshold reached 2"
    assert state.last_metrics == {"request-success-rate": None}
    warnings = messages(state, "warning")
    assert warnings.count("Halt advancement: metric request-success-rate query failed: metrics.query is broken") == 2
    assert platform.route_history == [(80, 20, False), ROLLED_BACK]
    assert_rolled_back(platform)


async def test_rollback_completes_when_a_rollback_step_fails_for_good(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(broken={c.ACT_ROUTER_SET_ROUTES})
    with hook_server() as hooks:
        spec = canary({"webhooks": [webhook("notify", "post-rollout", hooks.url("post"))]})
        async with running_release(time_skipping_env, platform, request(spec)) as run:
            failure = await run.rolled_back()
            state = await run.state()
        assert [p["phase"] for p in hooks.payloads("post")] == ["Failed"]
    assert failure.message == f"Step failed for good: {c.ACT_ROUTER_SET_ROUTES} is broken"
    assert (state.phase, state.outcome) == ("Failed", failure.message)
    # The router could not be reset; the canary was still scaled down and the rest of the rollback ran.
    assert platform.route_history == []
    assert platform.canary_replicas == 0
    assert any(m.startswith("Rollback step failed for good: route all traffic to primary") for m in messages(state))


# ----------------------------------------------------------------------------------------------------------------
# alerts


def with_alerts(spec_analysis: dict[str, Any], hooks_url: str, errors_url: str) -> Any:
    errors = slack_provider(errors_url)
    errors.metadata.name = "errors"
    alerts = [
        {"name": "on-call", "severity": "info", "providerRef": {"name": "on-call"}},
        {"name": "errors-only", "severity": "error", "providerRef": {"name": "errors", "namespace": "test"}},
    ]
    spec = canary({**spec_analysis, "alerts": alerts})
    return request(spec, alert_providers={"test/on-call": slack_provider(hooks_url), "test/errors": errors})


async def test_alerts_reach_the_provider_in_flaggers_shape(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(metric=success_rate(50.0))
    with hook_server() as hooks:
        req = with_alerts({"threshold": 1}, hooks.url("slack"), hooks.url("errors"))
        async with running_release(time_skipping_env, platform, req) as run:
            await run.rolled_back()
            author = f"{run.request.canary.metadata.name}.test"
        info, errors = hooks.payloads("slack"), hooks.payloads("errors")
    metadata = [
        {"title": "Target", "value": "Deployment/podinfo.test", "short": False},
        {"title": "Failed checks threshold", "value": "1", "short": False},
        {"title": "Progress deadline", "value": "600s", "short": False},
        {"title": "Traffic routing", "value": "Weight step: 20 max: 50", "short": False},
    ]
    texts = [(p["attachments"][0]["text"], p["attachments"][0]["color"]) for p in info]
    assert texts == [
        ("New Deployment detected, initialization completed.", "good"),
        ("New revision detected, progressing canary analysis.", "good"),
        ("Failed checks threshold reached 1", "danger"),
    ]
    assert info[0]["attachments"][0]["fields"] == metadata
    assert info[1]["attachments"][0]["fields"] == metadata
    for payload in info:
        assert (payload["channel"], payload["icon_emoji"]) == ("alerts", ":rocket:")
        assert payload["attachments"][0]["author_name"] == author
    # An `error` alert hears only errors.
    assert [p["attachments"][0]["text"] for p in errors] == ["Failed checks threshold reached 1"]


async def test_alert_delivery_failure_does_not_fail_the_release(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    with hook_server() as hooks:
        hooks.answer("slack", 500, body="slack is down")
        req = with_alerts({}, hooks.url("slack"), hooks.url("errors"))
        async with running_release(time_skipping_env, platform, req) as run:
            result = await run.handle.result()
            state = await run.state()
        assert len(hooks.calls("slack")) == 3 and hooks.calls("errors") == []
    assert result.phase == "Succeeded"
    undelivered = [m for m in messages(state, "warning") if m.startswith("alert on-call not delivered")]
    assert len(undelivered) == 3  # initialization, new revision, promotion finished
    assert "500" in undelivered[0]


async def test_primary_stuck_after_promotion_sends_all_traffic_to_the_canary(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Flagger's handleFailedPromotion: the canary still runs the new version, so it keeps serving everything."""
    platform = FakePlatform(stuck={"primary"})
    async with running_release(time_skipping_env, platform, request(canary())) as run:
        failure = await run.rolled_back()
        state = await run.state()
    assert failure.message.startswith("Promotion failed, primary not ready")
    assert state.phase == "Failed"
    assert (state.primary_weight, state.canary_weight) == (0, 100)
    assert platform.route_history[-1] == (0, 100, False)
    assert platform.canary_replicas == 1  # the canary is not scaled down: it serves all traffic
    assert c.ACT_WORKLOAD_PROMOTE in platform.names()


async def test_rollback_starts_at_the_failing_check_not_one_interval_later(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Flagger notices the threshold at the next tick; canaryflow rolls back at the check that reaches it."""
    platform = FakePlatform(metric=lambda name, n: 50.0 if name == "request-success-rate" else 100.0)
    async with running_release(time_skipping_env, platform, request(canary({"threshold": 2}))) as run:
        await run.rolled_back()
        state = await run.state()
    failures = [d for d in state.decisions if d.kind == "warning" and "success rate" in d.message]
    rollback = next(d for d in state.decisions if d.message.startswith("Rolling back") and "threshold" in d.message)
    assert len(failures) == 2
    assert (rollback.at - failures[-1].at).total_seconds() < 1  # no extra analysis interval of bad traffic
    assert platform.metric_calls["request-success-rate"] == 2
