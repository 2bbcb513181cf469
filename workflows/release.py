"""CanaryRelease: one workflow execution is one release of one canary, from initialization to Succeeded or Failed.

The body reads like the release it runs: initialize, wait for the rollout gate, scale the canary up, run the
analysis tick by tick on durable timers, promote, finalise. Every decision comes from `workflows.decisions`;
every side effect is an activity; humans steer it with signals or updates that share one handler each.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities import contracts as c
    from activities.routers.base import router_key
    from activities.webhooks import webhook_activity_timeout
    from activities.workloads.base import platform_of
    from canaryflow import shared
    from canaryflow.spec import MANUAL_GATE_URL, CanaryMetric, CanaryWebhook, WebhookType
    from workflows import decisions as d
    from workflows.model import (
        DECISION_LOG_LIMIT,
        Command,
        CommandResult,
        Decision,
        ReleaseRequest,
        ReleaseResult,
        ReleaseState,
        Stage,
    )

ResultT = TypeVar("ResultT", bound=BaseModel)

ERR_ROLLED_BACK = "ReleaseRolledBack"
PATCH_ROLLBACK_AT_FAILING_CHECK = "rollback-at-failing-check"
# Releases started with this patch send `status.report` activities (Canary status, Events, worker metrics).
PATCH_STATUS_REPORTS = "status-reports"
STATUS_REPORT_TIMEOUT = timedelta(seconds=15)
STATUS_REPORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
STATUS_REPORT_DECISIONS = 50

# Forward steps: bounded retries, then the release rolls back (a permanent activity failure).
FORWARD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=c.NON_RETRYABLE_ERRORS,
)
# Rollback steps must eventually succeed: unlimited attempts, capped backoff.
ROLLBACK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# Readiness is polled by retrying "NotReady" (retries add no history events) until the progress deadline.
READINESS_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=1.0,
    non_retryable_error_types=c.NON_RETRYABLE_ERRORS,
)
# A metric query that fails counts as a failed check (Flagger); one quick retry absorbs a worker restart.
METRIC_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)
# Webhook activities retry HTTP themselves (Flagger's `retries`); a second attempt only covers a lost worker.
WEBHOOK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)
STEP_TIMEOUT = timedelta(seconds=60)


class _RollbackRequested(Exception):
    """Raised inside the release body to leave it and run the rollback with this reason."""

    def __init__(self, reason: str, *, alert: bool = True, severity: str = "warn") -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert = alert
        self.severity = severity


class _NewRevision(Exception):
    """A new revision arrived while analysing: restart the analysis from weight 0 on it."""


class _PromoteNow(Exception):
    """A human asked to skip the remaining analysis."""


@dataclass
class _Pending:
    approvals: dict[str, Command]
    rejection: tuple[str, Command] | None = None
    abort: Command | None = None
    promote: Command | None = None
    new_revision: ReleaseRequest | None = None


@workflow.defn(name=shared.WORKFLOW_TYPE)
class CanaryRelease:
    @workflow.init
    def __init__(self, request: ReleaseRequest) -> None:
        # State is built here, never at the top of run(): signals delivered with the first activation run first.
        self._request = request
        self._plan = self._make_plan(request)
        if request.carried_state is not None:
            self._state = request.carried_state.model_copy(deep=True)
            self._state.runs += 1
        else:
            self._state = ReleaseState(
                name=request.canary.metadata.name,
                namespace=request.canary.metadata.namespace,
                revision=request.revision,
                strategy=self._plan.strategy.value,
                threshold=self._plan.threshold,
                interval_seconds=self._interval(request),
            )
        self._pending = _Pending(approvals={})
        self._published: dict[str, Any] = {}
        self._rolling_back = False
        self._command_seq = 0  # bumped by every accepted command; wakes the interval timer
        self._reporting = False  # status reports on (patched); off while replaying older histories
        self._status_dirty = False
        self._status_in_flight = False
        self._status_finished = False
        self._status_reporter: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------------------------------------------------
    # Entry point

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseResult:
        state = self._state
        if state.started_at is None:
            state.started_at = workflow.now()
            state.last_transition_time = workflow.now()
            self._log("phase", f"phase {state.phase}")
        for warning in self._plan.warnings:
            self._log("warning", warning)
        if workflow.patched(PATCH_STATUS_REPORTS):
            self._reporting = True
            self._status_reporter = asyncio.create_task(self._report_status_changes())
        self._publish()
        try:
            await self._release()
        except _RollbackRequested as rollback:
            await self._shielded_rollback(rollback.reason, alert=rollback.alert, severity=rollback.severity)
        except _ContinueAsNew:
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._flush_status(finished=False)
            workflow.continue_as_new(self._continued_request())
        except (CancelledError, asyncio.CancelledError):
            reason = workflow.cancellation_reason() or "no reason given"
            await self._shielded_rollback(f"Release cancelled: {reason}", alert=True, severity="warn")
            await self._flush_status(finished=True)
            raise
        except ActivityError as failure:
            await self._shielded_rollback(
                f"Step failed for good: {_failure_message(failure)}", alert=True, severity="error"
            )
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush_status(finished=True)
        if self._pending.new_revision is not None:
            # A revision that arrived during promotion or rollback gets its own run, like Flagger's next tick.
            next_request = self._pending.new_revision
            workflow.continue_as_new(next_request.model_copy(update={"carried_state": None}))
        if state.phase == d.Phase.FAILED:
            raise ApplicationError(state.outcome, type=ERR_ROLLED_BACK, non_retryable=True)
        return self._result()

    async def _release(self) -> None:
        state = self._state
        if state.stage == Stage.INITIALIZE and not await self._initialize():
            state.outcome = f"{self._canary_id()} initialized: the target runs the primary's revision"
            state.stage = Stage.DONE
            return
        while True:
            try:
                if state.stage in (Stage.INITIALIZE, Stage.CONFIRM_ROLLOUT):
                    state.stage = Stage.CONFIRM_ROLLOUT
                    await self._confirm_rollout()
                    await self._scale_up_canary()
                    if self._request.canary.spec.skip_analysis:
                        await self._promote(skipped=True)
                        return
                    state.stage = Stage.ANALYSIS
                if state.stage == Stage.ANALYSIS:
                    await self._analyse()
                    state.stage = Stage.PROMOTION
                if state.stage == Stage.PROMOTION:
                    await self._promote(skipped=False)
                return
            except _NewRevision:
                await self._restart_on_new_revision()
            except _PromoteNow:
                state.stage = Stage.PROMOTION

    # ----------------------------------------------------------------------------------------------------------
    # Phases

    async def _initialize(self) -> bool:
        """Bootstrap primary and routing. False: the target already runs the primary's revision (Flagger's first
        sight of a canary), so the release ends at Initialized without an analysis."""
        self._set_phase(d.Phase.INITIALIZING)
        found: c.InitializeResult | None = await self._act(
            c.ACT_WORKLOAD_INITIALIZE, self._target(), result_type=c.InitializeResult, summary="bootstrap primary"
        )
        await self._act(c.ACT_ROUTER_RECONCILE, self._target(), summary="reconcile routing")
        self._set_phase(d.Phase.INITIALIZED)
        if found is None or found.primary_bootstrapped:
            # Flagger announces a canary once, when it first sees it; later revisions go straight to analysis.
            await self._event(f"Initialization done! {self._canary_id()}")
            await self._alert(f"New {self._kind()} detected, initialization completed.", "info", with_metadata=True)
        return found is None or found.needs_analysis

    async def _confirm_rollout(self) -> None:
        """Flagger's confirm-rollout gate: re-checked every interval; the phase is Waiting while it holds."""
        while not await self._gate(WebhookType.CONFIRM_ROLLOUT):
            if self._state.phase != d.Phase.WAITING:
                self._set_phase(d.Phase.WAITING)
                await self._gate_alert(WebhookType.CONFIRM_ROLLOUT, "Canary is waiting for approval.")
            await self._wait_interval(f"confirm-rollout gate ({self._state.name})")
            self._raise_on_commands()
            self._maybe_continue_as_new()

    async def _scale_up_canary(self) -> None:
        await self._event(f"New revision detected! Scaling up {self._target_name()}")
        await self._alert("New revision detected, progressing canary analysis.", "info", with_metadata=True)
        await self._act(c.ACT_WORKLOAD_SCALE_FROM_ZERO, self._target(), summary="scale canary from zero")
        self._state.canary_running = True
        self._reset_run_counters()
        self._set_phase(d.Phase.PROGRESSING)
        self._state.started_at = workflow.now()
        await self._wait_ready("canary")

    async def _analyse(self) -> None:
        """The analysis loop: one tick now, then one tick per interval until the strategy says promote."""
        # A fresh run ticks at once; a run continued-as-new (ticks > 0) first waits out its interval.
        first = self._state.ticks == 0
        while True:
            if not first:
                await self._wait_interval(f"analysis interval {self._state.ticks + 1}")
            first = False
            self._raise_on_commands()
            if self._state.paused:
                await self._wait_while_paused()
                self._raise_on_commands()  # an abort, promote or new revision ends the pause at once
                continue
            self._maybe_continue_as_new()
            if await self._tick():
                return

    async def _tick(self) -> bool:
        """One Flagger tick of advanceCanary, from the readiness check to the strategy step. True = promote."""
        state, plan = self._state, self._plan
        state.ticks += 1
        await self._wait_ready("canary")
        if await self._rollback_hook_fired():
            raise _RollbackRequested("Rolling back manual webhook invoked")
        if d.threshold_reached(state.failed_checks, plan.threshold):
            await self._threshold_rollback()

        if d.is_first_analysis_tick(state.canary_weight, state.iterations, plan.mirror, state.mirrored):
            await self._event(f"Starting canary analysis for {self._target_name()}")
            if not await self._run_hooks(WebhookType.PRE_ROLLOUT):
                await self._alert("Pre-rollout check failed, canary analysis halted.", "warn")
                return await self._failed_check()
        elif not await self._run_analysis():
            return await self._failed_check()

        action = d.next_action(plan, state.canary_weight, state.iterations, state.mirrored)
        if action.confirm_traffic_increase and not await self._gate(WebhookType.CONFIRM_TRAFFIC_INCREASE):
            await self._gate_alert(
                WebhookType.CONFIRM_TRAFFIC_INCREASE, "Canary traffic increase is waiting for approval."
            )
            return False
        if action.confirm_promotion and not await self._gate(WebhookType.CONFIRM_PROMOTION):
            if state.phase != d.Phase.WAITING_PROMOTION:
                self._set_phase(d.Phase.WAITING_PROMOTION)
                await self._gate_alert(WebhookType.CONFIRM_PROMOTION, "Canary promotion is waiting for approval.")
            return False
        if action.kind == d.ActionKind.PROMOTE:
            return True
        if state.phase == d.Phase.WAITING_PROMOTION:
            self._set_phase(d.Phase.PROGRESSING)
        event = action.event(self._canary_id())
        if action.writes_routes:
            await self._set_routes(action.primary_weight, action.canary_weight, action.mirrored, event)
        state.iterations = action.iterations
        await self._event(event)
        return False

    async def _promote(self, *, skipped: bool) -> None:
        state = self._state
        if skipped:
            await self._set_routes(100, 0, False, "skip analysis: route all traffic to primary")
        self._set_phase(d.Phase.PROMOTING)
        target, namespace = self._request.canary.spec.target_ref.name, self._state.namespace
        await self._event(f"Copying {target}.{namespace} template spec to {target}-primary.{namespace}")
        await self._act(c.ACT_WORKLOAD_PROMOTE, self._target(), summary="copy canary spec to primary")
        try:
            await self._wait_ready("primary")
        except _RollbackRequested as stuck:
            if not state.canary_running:
                raise
            await self._fail_promotion(stuck.reason)
            return
        if not skipped:
            while state.canary_weight > 0 or state.mirrored:
                primary, canary = d.promotion_traffic_shift(self._plan, state.primary_weight, state.canary_weight)
                if self._plan.provider == "kubernetes":
                    primary, canary = 100, 0
                message = "Routing all traffic to primary" if primary == 100 else f"Advance primary weight {primary}"
                await self._set_routes(primary, canary, False, message)
                await self._event(message)
                if canary > 0:
                    await self._wait_interval("promotion traffic shift")
        self._set_phase(d.Phase.FINALISING)
        await self._act(c.ACT_WORKLOAD_SCALE_TO_ZERO, self._target(), summary="scale canary to zero")
        state.canary_running = False
        state.stage = Stage.DONE
        self._set_phase(d.Phase.SUCCEEDED)
        state.outcome = (
            "Canary analysis was skipped, promotion finished."
            if skipped
            else ("Canary analysis completed successfully, promotion finished.")
        )
        await self._run_hooks(WebhookType.POST_ROLLOUT)
        await self._event(f"Promotion completed! Scaling down {self._target_name()}")
        await self._alert(state.outcome, "info")

    async def _fail_promotion(self, reason: str) -> None:
        """Flagger's handleFailedPromotion: the primary got the new spec but never became ready, so the canary
        (still running the same version) takes all traffic and the release ends Failed with canary weight 100."""
        state = self._state
        self._rolling_back = True
        message = f"Promotion failed, primary not ready: {reason}"
        await self._event(message, warning=True)
        await self._alert(message, "error")
        routes = c.SetRoutes(target=self._target(), routes=c.Routes(primary_weight=0, canary_weight=100))
        if await self._compensate(c.ACT_ROUTER_SET_ROUTES, routes, "route all traffic to canary"):
            self._apply_routes(0, 100, False)
        state.stage = Stage.DONE
        state.outcome = message
        self._set_phase(d.Phase.FAILED)
        await self._run_hooks(WebhookType.POST_ROLLOUT)

    async def _restart_on_new_revision(self) -> None:
        request = self._pending.new_revision
        assert request is not None
        self._pending.new_revision = None
        self._request = request.model_copy(update={"carried_state": None})
        self._plan = self._make_plan(self._request)
        state = self._state
        state.revision = request.revision
        state.strategy = self._plan.strategy.value
        state.threshold = self._plan.threshold
        state.interval_seconds = self._interval(self._request)
        await self._event("New revision detected! Restarting analysis", actor=request.requested_by)
        await self._set_routes(100, 0, False, "new revision: route all traffic to primary")
        self._reset_run_counters()
        self._pending.approvals.clear()
        state.waiting_gates.clear()
        state.stage = Stage.CONFIRM_ROLLOUT
        await self._act(c.ACT_WORKLOAD_INITIALIZE, self._target(), summary="apply new revision")

    # ----------------------------------------------------------------------------------------------------------
    # Rollback (compensation)

    async def _shielded_rollback(self, reason: str, *, alert: bool, severity: str) -> None:
        """Run the rollback to completion even if the workflow is cancelled while it runs."""
        task = asyncio.ensure_future(self._rollback(reason, alert=alert, severity=severity))
        while True:
            try:
                await asyncio.shield(task)
                return
            except asyncio.CancelledError:
                if task.done():
                    return
                continue

    async def _rollback(self, reason: str, *, alert: bool, severity: str) -> None:
        state = self._state
        self._rolling_back = True
        self._log("warning", f"Rolling back {self._canary_id()}: {reason}")
        if alert:
            await self._alert(reason, severity)
        routes = c.SetRoutes(target=self._target(), routes=c.Routes(primary_weight=100, canary_weight=0))
        if await self._compensate(c.ACT_ROUTER_SET_ROUTES, routes, "route all traffic to primary"):
            self._apply_routes(100, 0, False)
        await self._event(f"Canary failed! Scaling down {self._target_name()}", warning=True)
        if await self._compensate(c.ACT_WORKLOAD_SCALE_TO_ZERO, self._target(), "scale canary to zero"):
            state.canary_running = False
        state.stage = Stage.DONE
        state.outcome = reason
        state.waiting_gates.clear()
        self._set_phase(d.Phase.FAILED)
        await self._run_hooks(WebhookType.POST_ROLLOUT)

    async def _compensate(self, activity: str, arg: Any, step: str) -> bool:
        """One rollback step, retried until it succeeds; a step that fails for good must not stop the others."""
        try:
            await self._act(activity, arg, summary=f"rollback: {step}", retry=ROLLBACK_RETRY)
        except ActivityError as failure:
            self._log("warning", f"Rollback step failed for good: {step}: {_failure_message(failure)}")
            return False
        return True

    # ----------------------------------------------------------------------------------------------------------
    # Checks: webhooks, metrics, gates

    async def _run_analysis(self) -> bool:
        """Rollout hooks, then builtin metrics, then template metrics; the first failure halts the tick."""
        if not await self._run_hooks(WebhookType.ROLLOUT):
            return False
        metrics = self._analysis_metrics()
        ordered = [m for m in metrics if m.template_ref is None] + [m for m in metrics if m.template_ref is not None]
        for metric in ordered:
            if not await self._check_metric(metric):
                return False
        return True

    async def _check_metric(self, metric: CanaryMetric) -> bool:
        canary = self._request.canary
        template = None
        if metric.template_ref is not None:
            key = f"{metric.template_ref.namespace or canary.metadata.namespace}/{metric.template_ref.name}"
            template = self._request.metric_templates.get(key)
            if template is None:
                self._log("warning", f"Halt advancement: MetricTemplate {key} not found for metric {metric.name}")
                return False
        elif metric.name not in d.BUILTIN_METRICS and not metric.query:
            self._log("warning", f"Halt advancement: metric {metric.name} has no templateRef, query or builtin name")
            return False
        changed = self._state.last_route_change_at
        query = c.MetricQuery(
            target=self._target(),
            metric_name=metric.name,
            template=template,
            inline_query=metric.query if template is None else None,
            interval=metric.interval,
            variables=dict(metric.template_variables),
            since_last_route_change_seconds=(workflow.now() - changed).total_seconds() if changed else None,
        )
        try:
            result = await self._act(
                c.ACT_METRIC_QUERY,
                query,
                result_type=c.MetricValue,
                summary=f"metric {metric.name}",
                retry=METRIC_RETRY,
                timeout=timedelta(seconds=30),
            )
        except ActivityError as failure:
            self._state.last_metrics[metric.name] = None
            self._log("warning", f"Halt advancement: metric {metric.name} query failed: {_failure_message(failure)}")
            return False
        value = result.value
        self._state.last_metrics[metric.name] = value
        threshold = metric.threshold_range
        minimum, maximum = d.metric_bounds(
            metric.name,
            threshold.min if threshold else None,
            threshold.max if threshold else None,
            metric.threshold,
        )
        verdict = d.metric_verdict(metric.name, value, minimum, maximum, target=self._target_name())
        self._log("metric" if verdict.passed else "warning", f"{metric.name}: {verdict.message}")
        return verdict.passed

    async def _failed_check(self) -> bool:
        self._state.failed_checks += 1
        self._publish()
        # Flagger only notices the threshold at the start of the next tick, one interval of bad traffic later.
        # Rolling back at the failing check is a deliberate fix; old histories replay the old path.
        if workflow.patched(PATCH_ROLLBACK_AT_FAILING_CHECK) and d.threshold_reached(
            self._state.failed_checks, self._plan.threshold
        ):
            await self._threshold_rollback()
        return False

    async def _threshold_rollback(self) -> NoReturn:
        failed = self._state.failed_checks
        await self._event(f"Rolling back {self._canary_id()} failed checks threshold reached {failed}", warning=True)
        await self._alert(f"Failed checks threshold reached {failed}", "error")
        raise _RollbackRequested(f"Failed checks threshold reached {failed}", alert=False)

    async def _run_hooks(self, hook_type: WebhookType) -> bool:
        """Run every hook of a type in order; the first failure stops (Flagger). True when all passed."""
        phase = d.Phase.PROGRESSING if hook_type in (WebhookType.PRE_ROLLOUT, WebhookType.ROLLOUT) else None
        for hook in self._hooks(hook_type):
            result = await self._call_hook(hook, phase)
            if not result.ok:
                self._log(
                    "warning",
                    f"Halt advancement: {hook_type.value} check {hook.name} failed: {result.message}",
                )
                return False
            self._log("webhook", f"{hook_type.value} check {hook.name} passed")
        return True

    async def _rollback_hook_fired(self) -> bool:
        """Rollback hooks: any success means roll back now (Flagger: first success wins)."""
        for hook in self._hooks(WebhookType.ROLLBACK):
            result = await self._call_hook(hook, None)
            if result.ok:
                await self._event(f"Rolling back {self._canary_id()} manual webhook invoked", warning=True)
                return True
        return False

    async def _gate(self, gate: WebhookType) -> bool:
        """A confirm-* gate passes on a human approval or when every hook of that type answers with success."""
        state = self._state
        approval = self._pending.approvals.pop(gate.value, None)
        if approval is not None:
            self._log("gate", f"{gate.value} approved: {approval.reason}".rstrip(": "), actor=approval.identity)
            self._clear_gate(gate)
            return True
        hooks = self._hooks(gate)
        passed = True
        for hook in hooks:
            if hook.url == MANUAL_GATE_URL:
                passed = False
                break
            result = await self._call_hook(hook, None)
            if not result.ok:
                self._log("gate", f"Halt advancement: waiting for approval {hook.name} ({result.message})")
                passed = False
                break
        if passed:
            self._clear_gate(gate)
            return True
        if gate.value not in state.waiting_gates:
            state.waiting_gates.append(gate.value)
            self._publish()
        return False

    def _clear_gate(self, gate: WebhookType) -> None:
        if gate.value in self._state.waiting_gates:
            self._state.waiting_gates.remove(gate.value)
            self._publish()

    async def _gate_alert(self, gate: WebhookType, message: str) -> None:
        if any(not hook.mute_alert for hook in self._hooks(gate)):
            await self._alert(message, "warn")

    async def _call_hook(self, hook: CanaryWebhook, phase: d.Phase | None) -> c.WebhookResult:
        call = self._webhook_call(hook, phase or d.Phase(self._state.phase))
        try:
            result: c.WebhookResult = await self._act(
                c.ACT_WEBHOOK_CALL,
                call,
                result_type=c.WebhookResult,
                summary=f"{hook.type.value} hook {hook.name}",
                retry=WEBHOOK_RETRY,
                timeout=webhook_activity_timeout(call),
            )
        except ActivityError as failure:
            # The HTTP retries happen inside the activity; this is a lost worker or a timeout: a failed hook.
            return c.WebhookResult(ok=False, message=_failure_message(failure))
        return result

    def _webhook_call(
        self, hook: CanaryWebhook, phase: d.Phase, extra_metadata: dict[str, str] | None = None
    ) -> c.WebhookCall:
        metadata = dict(hook.metadata)
        metadata.update(extra_metadata or {})
        return c.WebhookCall(
            name=hook.name,
            type=hook.type.value,
            url=hook.url,
            timeout_seconds=d.webhook_timeout_seconds(hook.timeout),
            retries=hook.retries,
            disable_tls=hook.disable_tls,
            payload=d.webhook_payload(
                self._state.name, self._state.namespace, phase.value, self._state.revision, metadata
            ),
        )

    # ----------------------------------------------------------------------------------------------------------
    # Routes, readiness, timers

    async def _set_routes(self, primary: int, canary: int, mirrored: bool, message: str) -> None:
        affinity = self._session_affinity(canary)
        await self._act(
            c.ACT_ROUTER_SET_ROUTES,
            c.SetRoutes(
                target=self._target(),
                routes=c.Routes(primary_weight=primary, canary_weight=canary, mirrored=mirrored),
                session_affinity=affinity,
            ),
            summary=f"{message}: primary {primary}% / canary {canary}%" + (" (mirrored)" if mirrored else ""),
        )
        self._apply_routes(primary, canary, mirrored)
        self._state.last_route_change_at = workflow.now()

    def _session_affinity(self, canary_weight: int) -> c.SessionAffinityRoute | None:
        analysis = self._request.canary.spec.analysis
        affinity = analysis.session_affinity if analysis else None
        if affinity is None:
            return None
        state = self._state
        if canary_weight > 0 and not state.session_cookie:
            state.session_cookie = _random_letters(10)
        elif canary_weight == 0 and state.session_cookie:
            state.previous_session_cookie, state.session_cookie = state.session_cookie, ""
        return c.SessionAffinityRoute(
            cookie_name=affinity.cookie_name,
            cookie_value=state.session_cookie,
            max_age=affinity.max_age,
            previous_cookie=state.previous_session_cookie,
            primary_cookie_name=affinity.primary_cookie_name,
            primary_cookie_value=_random_letters(10) if affinity.primary_cookie_name else "",
        )

    def _apply_routes(self, primary: int, canary: int, mirrored: bool) -> None:
        self._state.primary_weight, self._state.canary_weight, self._state.mirrored = (
            primary,
            canary,
            mirrored,
        )
        self._publish()

    async def _wait_ready(self, workload: str) -> None:
        """Poll readiness; a stuck rollout past progressDeadlineSeconds rolls the release back."""
        spec = self._request.canary.spec
        analysis = spec.analysis
        threshold = (
            (analysis.primary_ready_threshold if workload == "primary" else analysis.canary_ready_threshold)
            if analysis
            else 100
        )
        # The deadline counts from this wait: the rollout it waits for (canary scale-up, primary promotion, a
        # canary that became unready) started right before, not when the analysis started.
        started = workflow.now()
        check = c.ReadinessCheck(
            target=self._target(),
            workload="primary" if workload == "primary" else "canary",
            threshold_percent=threshold,
            progress_deadline_seconds=spec.progress_deadline_seconds,
            rollout_started_at=started.timestamp(),
        )
        try:
            await self._act(
                c.ACT_WORKLOAD_CHECK_READY,
                check,
                summary=f"wait for {workload} readiness",
                retry=READINESS_RETRY,
                timeout=timedelta(seconds=30),
                schedule_to_close=timedelta(seconds=spec.progress_deadline_seconds + 30),
            )
        except ActivityError as failure:
            if _is_deadline(failure):
                message = f"Progress deadline exceeded: {workload} not ready ({_failure_message(failure)})"
                await self._event(f"Rolling back {self._canary_id()} {message}", warning=True)
                raise _RollbackRequested(message, severity="error") from failure
            raise

    async def _wait_interval(self, summary: str) -> None:
        """Sleep one analysis interval; commands (approve, abort, promote, new revision, pause) cut it short."""
        interval = self._state.interval_seconds
        self._state.next_tick_at = workflow.now() + timedelta(seconds=interval)
        self._publish()
        seen = self._command_seq
        with contextlib.suppress(TimeoutError):  # the interval elapsed without a command
            await workflow.wait_condition(
                lambda: self._command_seq != seen,
                timeout=timedelta(seconds=interval),
                timeout_summary=summary,
            )
        self._state.next_tick_at = None

    async def _wait_while_paused(self) -> None:
        await workflow.wait_condition(
            lambda: (
                not self._state.paused
                or self._pending.abort is not None
                or self._pending.new_revision is not None
                or self._pending.promote is not None
            ),
            timeout_summary="paused",
        )

    def _raise_on_commands(self) -> None:
        pending = self._pending
        if pending.abort is not None:
            who = pending.abort
            raise _RollbackRequested(_reasoned(f"Aborted by {who.identity or 'unknown'}", who.reason))
        if pending.rejection is not None:
            gate, who = pending.rejection
            raise _RollbackRequested(_reasoned(f"Gate {gate} rejected by {who.identity or 'unknown'}", who.reason))
        if pending.new_revision is not None:
            raise _NewRevision()
        if pending.promote is not None:
            who = pending.promote
            pending.promote = None
            self._state.paused, self._state.paused_by = False, ""
            self._log("command", _reasoned("Promotion forced, remaining analysis skipped", who.reason), who.identity)
            raise _PromoteNow()

    def _maybe_continue_as_new(self) -> None:
        info = workflow.info()
        if self._pending.approvals:
            return  # carry no half-handled command across runs (waiting gates are state: they carry over)
        if (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._request.history_event_limit
        ):
            raise _ContinueAsNew()

    def _continued_request(self) -> ReleaseRequest:
        return self._request.model_copy(update={"carried_state": self._state})

    # ----------------------------------------------------------------------------------------------------------
    # Human control: each command is a signal (UI, `temporal workflow signal`) and an update with a validator.

    def _check_command(self, kind: str, command: Command) -> str:
        """Empty string when the command applies now; otherwise why it is refused."""
        phase = self._state.phase
        final = phase in (d.Phase.SUCCEEDED, d.Phase.FAILED) or self._rolling_back
        if final:
            return f"release is {phase}; nothing to {kind}"
        if kind in ("approve", "reject"):
            gates = self._state.waiting_gates
            if not gates:
                return f"no gate is waiting for approval (phase {phase})"
            if command.gate and command.gate not in gates:
                return f"gate {command.gate!r} is not waiting; waiting gates: {', '.join(gates)}"
            if not command.gate and len(gates) > 1:
                return f"several gates wait ({', '.join(gates)}); name one with --gate"
        elif kind in ("abort", "pause") and phase in (d.Phase.PROMOTING, d.Phase.FINALISING):
            # The primary already runs the new revision and nothing checks for these until the release ends.
            return f"cannot {kind} in phase {phase}: the promotion is under way"
        elif kind == "pause" and self._state.paused:
            return f"release is already paused by {self._state.paused_by or 'unknown'}"
        elif kind == "resume" and not self._state.paused:
            return "release is not paused"
        elif kind == "promote" and phase not in (
            d.Phase.WAITING,
            d.Phase.PROGRESSING,
            d.Phase.WAITING_PROMOTION,
        ):
            return f"cannot promote in phase {phase}"
        return ""

    def _apply_command(self, kind: str, command: Command) -> CommandResult:
        refusal = self._check_command(kind, command)
        if refusal:
            self._log("command", f"{kind} ignored: {refusal}", command.identity)
            return CommandResult(accepted=False, message=refusal, phase=self._state.phase)
        pending, state = self._pending, self._state
        if kind in ("approve", "reject"):
            gate = command.gate or state.waiting_gates[0]
            if kind == "approve":
                pending.approvals[gate] = command
            else:
                pending.rejection = (gate, command)
            message = f"{gate} {'approved' if kind == 'approve' else 'rejected'}"
        elif kind == "abort":
            pending.abort = command
            message = "abort requested: rolling back"
        elif kind == "pause":
            state.paused, state.paused_by = True, command.identity
            message = "release paused"
        elif kind == "resume":
            state.paused, state.paused_by = False, ""
            message = "release resumed"
        else:
            pending.promote = command
            message = "promotion requested: skipping the remaining analysis"
        self._log("command", _reasoned(message, command.reason), command.identity)
        self._command_seq += 1
        self._publish()
        return CommandResult(accepted=True, message=message, phase=state.phase)

    def _validate(self, kind: str, command: Command) -> None:
        refusal = self._check_command(kind, command)
        if refusal:
            raise ValueError(refusal)

    @workflow.signal(name="approve")
    def approve_signal(self, command: Command) -> None:
        self._apply_command("approve", command)

    @workflow.update(name="approve")
    def approve(self, command: Command) -> CommandResult:
        return self._apply_command("approve", command)

    @approve.validator
    def _validate_approve(self, command: Command) -> None:
        self._validate("approve", command)

    @workflow.signal(name="reject")
    def reject_signal(self, command: Command) -> None:
        self._apply_command("reject", command)

    @workflow.update(name="reject")
    def reject(self, command: Command) -> CommandResult:
        return self._apply_command("reject", command)

    @reject.validator
    def _validate_reject(self, command: Command) -> None:
        self._validate("reject", command)

    @workflow.signal(name="abort")
    def abort_signal(self, command: Command) -> None:
        self._apply_command("abort", command)

    @workflow.update(name="abort")
    def abort(self, command: Command) -> CommandResult:
        return self._apply_command("abort", command)

    @abort.validator
    def _validate_abort(self, command: Command) -> None:
        self._validate("abort", command)

    @workflow.signal(name="pause")
    def pause_signal(self, command: Command) -> None:
        self._apply_command("pause", command)

    @workflow.update(name="pause")
    def pause(self, command: Command) -> CommandResult:
        return self._apply_command("pause", command)

    @pause.validator
    def _validate_pause(self, command: Command) -> None:
        self._validate("pause", command)

    @workflow.signal(name="resume")
    def resume_signal(self, command: Command) -> None:
        self._apply_command("resume", command)

    @workflow.update(name="resume")
    def resume(self, command: Command) -> CommandResult:
        return self._apply_command("resume", command)

    @resume.validator
    def _validate_resume(self, command: Command) -> None:
        self._validate("resume", command)

    @workflow.signal(name="promote")
    def promote_signal(self, command: Command) -> None:
        self._apply_command("promote", command)

    @workflow.update(name="promote")
    def promote(self, command: Command) -> CommandResult:
        return self._apply_command("promote", command)

    @promote.validator
    def _validate_promote(self, command: Command) -> None:
        self._validate("promote", command)

    @workflow.signal(name="new_revision")
    def new_revision(self, request: ReleaseRequest) -> None:
        """Signal-with-start lands here: a different revision restarts the analysis at weight 0.

        A signal (not an update) so that CI can start or retarget a release while no worker runs.
        """
        meta = request.canary.metadata
        if (meta.namespace, meta.name) != (self._state.namespace, self._state.name):
            self._log("command", f"ignored a revision for {meta.namespace}/{meta.name}", request.requested_by)
            return
        if request.revision == self._state.revision and self._pending.new_revision is None:
            return  # the start that created this run, or a repeated CI job for the same revision
        self._pending.new_revision = request
        self._command_seq += 1
        self._log("command", f"new revision {request.revision} received", request.requested_by)

    @workflow.query(name="state")
    def state(self) -> ReleaseState:
        return self._state

    @workflow.query(name="decisions")
    def decisions(self) -> list[Decision]:
        return list(self._state.decisions)

    # ----------------------------------------------------------------------------------------------------------
    # Events, alerts, visibility

    async def _event(self, message: str, *, warning: bool = False, actor: str = "") -> None:
        """A Flagger event: logged in the decision log and sent to `event` webhooks."""
        self._log("warning" if warning else "event", message, actor)
        for hook in self._hooks(WebhookType.EVENT):
            extra = d.event_metadata(message, warning, workflow.now())
            call = self._webhook_call(hook, d.Phase(self._state.phase), extra)  # the event fields win
            await self._act(
                c.ACT_WEBHOOK_CALL,
                call,
                result_type=c.WebhookResult,
                summary=f"event hook {hook.name}",
                retry=NOTIFY_RETRY,
                timeout=webhook_activity_timeout(call),
            )

    async def _alert(self, message: str, severity: str, *, with_metadata: bool = False) -> None:
        analysis = self._request.canary.spec.analysis
        if analysis is None:
            return
        fields = self._alert_fields() if with_metadata or severity != "info" else {}
        for alert in analysis.alerts:
            if not d.alert_wanted(alert.severity, severity):
                continue
            namespace = alert.provider_ref.namespace or self._state.namespace
            provider = self._request.alert_providers.get(f"{namespace}/{alert.provider_ref.name}")
            if provider is None:
                self._log(
                    "warning",
                    f"alert {alert.name}: AlertProvider {namespace}/{alert.provider_ref.name} not found",
                )
                continue
            payload = c.Alert(
                canary_name=self._state.name,
                canary_namespace=self._state.namespace,
                provider=provider,
                severity=severity,
                message=message,
                fields=fields,
            )
            try:
                result = await self._act(
                    c.ACT_NOTIFY_ALERT,
                    payload,
                    result_type=c.AlertResult,
                    summary=f"alert {alert.name}",
                    retry=NOTIFY_RETRY,
                    timeout=timedelta(seconds=30),
                )
                if not result.delivered:
                    self._log("warning", f"alert {alert.name} not delivered: {result.message}")
            except ActivityError as failure:
                self._log("warning", f"alert {alert.name} not delivered: {_failure_message(failure)}")

    def _alert_fields(self) -> dict[str, str]:
        target = self._request.canary.spec.target_ref
        return {
            "Target": f"{target.kind}/{target.name}.{self._state.namespace}",
            "Failed checks threshold": str(self._plan.threshold),
            "Progress deadline": f"{self._request.canary.spec.progress_deadline_seconds}s",
            "Traffic routing": d.traffic_routing_description(self._plan),
        }

    def _log(self, kind: str, message: str, actor: str = "") -> None:
        state = self._state
        state.decisions.append(Decision(at=workflow.now(), phase=state.phase, kind=kind, message=message, actor=actor))
        self._status_dirty = True
        if len(state.decisions) > DECISION_LOG_LIMIT:
            overflow = len(state.decisions) - DECISION_LOG_LIMIT
            del state.decisions[:overflow]
            state.dropped_decisions += overflow
        workflow.logger.info("%s %s: %s", self._canary_id(), kind, message, extra={"phase": state.phase})

    def _set_phase(self, phase: d.Phase) -> None:
        if self._state.phase != phase.value:
            self._state.phase = phase.value
            self._state.last_transition_time = workflow.now()
            self._log("phase", f"phase {phase.value}")
        self._publish()

    def _publish(self) -> None:
        """Keep search attributes (on change only: every upsert is a history event) and current details current."""
        state = self._state
        wanted: dict[str, Any] = {
            shared.SA_NAME.name: state.name,
            shared.SA_NAMESPACE.name: state.namespace,
            shared.SA_PHASE.name: state.phase,
            shared.SA_WEIGHT.name: state.canary_weight,
            shared.SA_REVISION.name: state.revision[:250],
            shared.SA_STRATEGY.name: state.strategy,
        }
        keys = {k.name: k for k in shared.SEARCH_ATTRIBUTES}
        updates = [keys[name].value_set(value) for name, value in wanted.items() if self._published.get(name) != value]
        if updates:
            workflow.upsert_search_attributes(updates)
            self._published.update(wanted)
        workflow.set_current_details(self._details())
        self._status_dirty = True

    # ----------------------------------------------------------------------------------------------------------
    # Status reports: one in flight at a time, in order, coalesced (the latest state wins)

    async def _report_status_changes(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self._status_dirty)
            self._status_dirty = False
            self._status_in_flight = True
            report = self._status_report()
            try:
                result = await workflow.execute_activity(
                    c.ACT_STATUS_REPORT,
                    report,
                    result_type=c.StatusReportResult,
                    start_to_close_timeout=STATUS_REPORT_TIMEOUT,
                    retry_policy=STATUS_REPORT_RETRY,
                    summary=f"status {report.phase} {report.canary_weight}%",
                )
                if result.failed:
                    workflow.logger.warning("%s status sinks failed: %s", self._canary_id(), result.failed)
            except ActivityError as failure:
                # Not in the decision log: logging there would itself call for another report.
                workflow.logger.warning("%s status not reported: %s", self._canary_id(), _failure_message(failure))
            finally:
                self._status_in_flight = False

    async def _flush_status(self, *, finished: bool) -> None:
        """Send the final state of this run and wait until it is delivered (or failed for good)."""
        if not self._reporting:
            return
        self._status_finished = finished
        self._status_dirty = True
        await workflow.wait_condition(lambda: not self._status_dirty and not self._status_in_flight)

    def _status_report(self) -> c.StatusReport:
        s = self._state
        canary = self._request.canary
        first_index = s.dropped_decisions
        new = [
            c.ReportedDecision(index=first_index + i, **decision.model_dump())
            for i, decision in enumerate(s.decisions)
            if first_index + i >= s.reported_decisions
        ][-STATUS_REPORT_DECISIONS:]
        s.reported_decisions = first_index + len(s.decisions)
        s.status_sequence += 1
        return c.StatusReport(
            workflow_id=workflow.info().workflow_id,
            canary_api_version=canary.api_version,
            name=s.name,
            namespace=s.namespace,
            target_kind=canary.spec.target_ref.kind,
            target_name=canary.spec.target_ref.name,
            provider=router_key(canary.spec.provider),
            platform=platform_of(self._target()),
            revision=s.revision,
            phase=s.phase,
            strategy=s.strategy,
            skipped_analysis=canary.spec.skip_analysis,
            primary_weight=s.primary_weight,
            canary_weight=s.canary_weight,
            mirrored=s.mirrored,
            iterations=s.iterations,
            failed_checks=s.failed_checks,
            threshold=s.threshold,
            last_transition_time=s.last_transition_time or workflow.now(),
            started_at=s.started_at,
            finished=self._status_finished,
            outcome=s.outcome,
            last_metrics=dict(s.last_metrics),
            new_decisions=new,
            sequence=s.status_sequence,
        )

    def _details(self) -> str:
        s = self._state
        gates = ", ".join(s.waiting_gates) or "none"
        metrics = ", ".join(f"{k}={'no values' if v is None else f'{v:g}'}" for k, v in s.last_metrics.items()) or "-"
        progress = (
            f"iteration {s.iterations}/{self._plan.iterations}"
            if self._plan.strategy != d.Strategy.CANARY
            else f"weight {s.canary_weight}/{self._plan.max_weight}"
        )
        mirrored = " (mirrored)" if s.mirrored else ""
        lines = [
            f"## {s.namespace}/{s.name} — **{s.phase}**" + (" (paused)" if s.paused else ""),
            "| | |",
            "|---|---|",
            f"| revision | `{s.revision}` |",
            f"| strategy | {s.strategy}: {progress} |",
            f"| routes | primary {s.primary_weight}% / canary {s.canary_weight}%{mirrored} |",
            f"| failed checks | {s.failed_checks}/{s.threshold} |",
            f"| last metrics | {metrics} |",
            f"| waiting gates | {gates} |",
        ]
        if s.next_tick_at:
            lines.append(f"| next analysis | {s.next_tick_at.isoformat(timespec='seconds')} |")
        if s.outcome:
            lines.append(f"| outcome | {s.outcome} |")
        if s.decisions:
            lines.append(f"\nlast decision: {s.decisions[-1].message}")
        return "\n".join(lines)

    # ----------------------------------------------------------------------------------------------------------
    # Helpers

    async def _act(
        self,
        activity: str,
        arg: Any,
        *,
        result_type: type[ResultT] | None = None,
        summary: str,
        retry: RetryPolicy = FORWARD_RETRY,
        timeout: timedelta = STEP_TIMEOUT,
        schedule_to_close: timedelta | None = None,
    ) -> Any:
        try:
            return await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=timeout,
                schedule_to_close_timeout=schedule_to_close,
                retry_policy=retry,
                summary=summary,
            )
        except ActivityError as failure:
            # Cancelling the release cancels the activity in flight: that is the cancellation, not a failed step
            # (callers treat a failed hook, metric or alert as a result and would swallow it).
            if isinstance(failure.cause, CancelledError):
                raise CancelledError(_failure_message(failure)) from failure
            raise

    def _target(self) -> c.ReleaseTarget:
        return c.ReleaseTarget(canary=self._request.canary, revision=self._state.revision, image=self._request.image)

    def _hooks(self, hook_type: WebhookType) -> list[CanaryWebhook]:
        analysis = self._request.canary.spec.analysis
        return [h for h in analysis.webhooks if h.type == hook_type] if analysis else []

    def _analysis_metrics(self) -> list[CanaryMetric]:
        analysis = self._request.canary.spec.analysis
        return list(analysis.metrics) if analysis else []

    def _reset_run_counters(self) -> None:
        state = self._state
        state.iterations = 0
        state.failed_checks = 0
        state.ticks = 0
        state.last_metrics = {}
        state.outcome = ""

    def _result(self) -> ReleaseResult:
        s = self._state
        return ReleaseResult(
            name=s.name,
            namespace=s.namespace,
            revision=s.revision,
            phase=s.phase,
            message=s.outcome,
            canary_weight=s.canary_weight,
            failed_checks=s.failed_checks,
            iterations=s.iterations,
        )

    def _canary_id(self) -> str:
        return f"{self._state.name}.{self._state.namespace}"

    def _target_name(self) -> str:
        return f"{self._request.canary.spec.target_ref.name}.{self._state.namespace}"

    def _kind(self) -> str:
        return self._request.canary.spec.target_ref.kind

    @staticmethod
    def _make_plan(request: ReleaseRequest) -> d.AnalysisPlan:
        spec = request.canary.spec
        analysis = spec.analysis
        provider = spec.provider or ""
        if analysis is None:
            return d.make_plan(
                provider=provider,
                iterations=0,
                has_match=False,
                step_weight=0,
                step_weights=(),
                max_weight=None,
                step_weight_promotion=0,
                mirror=False,
                threshold=1,
            )
        return d.make_plan(
            provider=provider,
            iterations=analysis.iterations,
            has_match=bool(analysis.match),
            step_weight=analysis.step_weight,
            step_weights=tuple(analysis.step_weights),
            max_weight=analysis.max_weight,
            step_weight_promotion=analysis.step_weight_promotion,
            mirror=analysis.mirror,
            threshold=analysis.threshold,
        )

    @staticmethod
    def _interval(request: ReleaseRequest) -> float:
        analysis = request.canary.spec.analysis
        return d.analysis_interval_seconds(analysis.interval if analysis else None, request.min_interval_seconds)


class _ContinueAsNew(Exception):
    """Leave the body at a tick boundary to continue-as-new with the carried state."""


def _reasoned(message: str, reason: str) -> str:
    return f"{message}: {reason}" if reason else message


def _random_letters(count: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rng = workflow.random()
    return "".join(rng.choice(letters) for _ in range(count))


def _failure_message(failure: FailureError) -> str:
    cause: BaseException | None = failure
    message = str(failure)
    while cause is not None:
        if isinstance(cause, FailureError) and cause.message:
            message = cause.message
        cause = cause.__cause__
    return message


def _is_deadline(failure: ActivityError) -> bool:
    from temporalio.exceptions import TimeoutError as ActivityTimeout

    cause = failure.cause
    # NotReady stops being retried only when the next poll would pass the schedule-to-close deadline.
    if isinstance(cause, ApplicationError) and cause.type in (c.ERR_PROGRESS_DEADLINE, c.ERR_NOT_READY):
        return True
    return isinstance(cause, ActivityTimeout)


if __name__ == "__main__":  # the sandbox re-imports this file; nothing runs at import
    pass
