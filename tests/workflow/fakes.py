"""A recording in-memory platform served as real Temporal activities under the product's activity names.

Workloads, router and metrics are in-memory (no platform exists in these tests); webhooks and alerts use the
real activities against a real local HTTP receiver. Each call is recorded so tests can assert the phases,
weights, router state and the exact order of side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.notifiers.activity import send_alert
from activities.webhooks import call_webhook

MetricScript = Callable[[str, int], float | None]  # (metric name, call number starting at 1) -> value


@dataclass
class FakePlatform:
    metric: MetricScript = lambda name, n: 99.9 if name == "request-success-rate" else 100.0
    # Readiness: number of NotReady answers before ready, per workload ("canary"/"primary").
    not_ready_polls: dict[str, int] = field(default_factory=dict)
    # Workloads whose rollout is stuck for good (ProgressDeadlineExceeded).
    stuck: set[str] = field(default_factory=set)
    # Activities that fail permanently (non-retryable), by activity name.
    broken: set[str] = field(default_factory=set)
    # Finer-grained permanent failures: (activity name, recorded argument) -> fail this call.
    fail_when: Callable[[str, Any], bool] = lambda name, arg: False
    calls: list[tuple[str, Any]] = field(default_factory=list)
    routes: c.Routes = field(default_factory=lambda: c.Routes(primary_weight=100, canary_weight=0))
    route_history: list[tuple[int, int, bool]] = field(default_factory=list)
    canary_replicas: int = 0
    primary_revision: str = ""
    metric_calls: dict[str, int] = field(default_factory=dict)
    ready_polls: dict[str, int] = field(default_factory=dict)
    # What `workload.initialize` answers (None: the pre-InitializeResult answer, i.e. analyse).
    initialize_result: c.InitializeResult | None = None
    # Every status report the workflow sent, in arrival order.
    reports: list[c.StatusReport] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.initialize,
            self.check_ready,
            self.scale_from_zero,
            self.scale_to_zero,
            self.promote,
            self.reconcile,
            self.set_routes,
            self.get_routes,
            self.query,
            call_webhook,
            send_alert,
            self.report_status,
        ]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def _record(self, name: str, arg: Any) -> None:
        if name in self.broken or self.fail_when(name, arg):
            raise ApplicationError(f"{name} is broken", type=c.ERR_NOT_FOUND, non_retryable=True)
        self.calls.append((name, arg))

    @activity.defn(name=c.ACT_WORKLOAD_INITIALIZE)
    async def initialize(self, target: c.ReleaseTarget) -> c.InitializeResult | None:
        self._record(c.ACT_WORKLOAD_INITIALIZE, target.revision)
        if not self.primary_revision:
            self.primary_revision = "bootstrap"
        return self.initialize_result

    @activity.defn(name=c.ACT_STATUS_REPORT)
    async def report_status(self, report: c.StatusReport) -> c.StatusReportResult:
        self.reports.append(report)
        return c.StatusReportResult(delivered=["fake"])

    @activity.defn(name=c.ACT_WORKLOAD_CHECK_READY)
    async def check_ready(self, check: c.ReadinessCheck) -> None:
        if check.workload in self.stuck:
            self._record(c.ACT_WORKLOAD_CHECK_READY, check.workload)
            raise ApplicationError(
                f"{check.workload} rollout exceeded its progress deadline",
                type=c.ERR_PROGRESS_DEADLINE,
                non_retryable=True,
            )
        polls = self.ready_polls.get(check.workload, 0) + 1
        self.ready_polls[check.workload] = polls
        if polls <= self.not_ready_polls.get(check.workload, 0):
            raise ApplicationError(f"{check.workload} not ready ({polls})", type=c.ERR_NOT_READY)
        self._record(c.ACT_WORKLOAD_CHECK_READY, check.workload)

    @activity.defn(name=c.ACT_WORKLOAD_SCALE_FROM_ZERO)
    async def scale_from_zero(self, target: c.ReleaseTarget) -> None:
        self._record(c.ACT_WORKLOAD_SCALE_FROM_ZERO, target.revision)
        self.canary_replicas = 1

    @activity.defn(name=c.ACT_WORKLOAD_SCALE_TO_ZERO)
    async def scale_to_zero(self, target: c.ReleaseTarget) -> None:
        self._record(c.ACT_WORKLOAD_SCALE_TO_ZERO, target.revision)
        self.canary_replicas = 0

    @activity.defn(name=c.ACT_WORKLOAD_PROMOTE)
    async def promote(self, target: c.ReleaseTarget) -> None:
        self._record(c.ACT_WORKLOAD_PROMOTE, target.revision)
        self.primary_revision = target.revision

    @activity.defn(name=c.ACT_ROUTER_RECONCILE)
    async def reconcile(self, target: c.ReleaseTarget) -> None:
        self._record(c.ACT_ROUTER_RECONCILE, target.revision)

    @activity.defn(name=c.ACT_ROUTER_SET_ROUTES)
    async def set_routes(self, request: c.SetRoutes) -> None:
        self._record(c.ACT_ROUTER_SET_ROUTES, request)
        self.routes = request.routes
        entry = (request.routes.primary_weight, request.routes.canary_weight, request.routes.mirrored)
        self.route_history.append(entry)

    @activity.defn(name=c.ACT_ROUTER_GET_ROUTES)
    async def get_routes(self, target: c.ReleaseTarget) -> c.Routes:
        return self.routes

    @activity.defn(name=c.ACT_METRIC_QUERY)
    async def query(self, query: c.MetricQuery) -> c.MetricValue:
        self._record(c.ACT_METRIC_QUERY, query.metric_name)
        count = self.metric_calls.get(query.metric_name, 0) + 1
        self.metric_calls[query.metric_name] = count
        return c.MetricValue(value=self.metric(query.metric_name, count), query=query.metric_name)

    def canary_weights(self) -> list[int]:
        """Distinct canary weights in the order the router received them."""
        return [canary for _, canary, _ in self.route_history]
