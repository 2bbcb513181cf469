"""Inputs and outputs of every activity, shared by the workflow (caller) and the providers (callees).

All are pydantic models so they travel through `pydantic_data_converter`. None carries a secret: secrets are
referenced by name (`secretRef`) and read inside the activity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.spec import AlertProvider, Canary, MetricTemplate

# Wire names of the activities. Frozen: renaming one breaks running releases.
ACT_WORKLOAD_INITIALIZE = "workload.initialize"
ACT_WORKLOAD_CHECK_READY = "workload.check_ready"
ACT_WORKLOAD_SCALE_FROM_ZERO = "workload.scale_from_zero"
ACT_WORKLOAD_SCALE_TO_ZERO = "workload.scale_to_zero"
ACT_WORKLOAD_PROMOTE = "workload.promote"
ACT_ROUTER_RECONCILE = "router.reconcile"
ACT_ROUTER_SET_ROUTES = "router.set_routes"
ACT_ROUTER_GET_ROUTES = "router.get_routes"
ACT_METRIC_QUERY = "metrics.query"
ACT_WEBHOOK_CALL = "webhook.call"
ACT_NOTIFY_ALERT = "notify.alert"
ACT_STATUS_REPORT = "status.report"

# ApplicationError types raised by activities. Non-retryable ones end the release with a rollback.
ERR_NOT_READY = "NotReady"  # retryable: the workload is still rolling out
ERR_PROGRESS_DEADLINE = "ProgressDeadlineExceeded"  # non-retryable
ERR_INVALID_SPEC = "InvalidSpec"  # non-retryable
ERR_NOT_FOUND = "TargetNotFound"  # non-retryable
ERR_PROVIDER_UNKNOWN = "ProviderNotRegistered"  # non-retryable
# Metric providers' errors (activities/metrics/*).
ERR_METRIC_AUTH_FAILED = "MetricAuthFailed"  # non-retryable: 401/403, or the secretRef cannot be used
ERR_METRIC_QUERY_INVALID = "MetricQueryInvalid"  # non-retryable: the query was rejected or gave the wrong shape
ERR_METRIC_QUERY_FAILED = "MetricQueryFailed"  # non-retryable: any other 4xx, or an answer that is not the API's
ERR_METRIC_SERVER_UNAVAILABLE = "MetricServerUnavailable"  # retryable: timeout, connection error, 5xx, 429
NON_RETRYABLE_ERRORS = [ERR_PROGRESS_DEADLINE, ERR_INVALID_SPEC, ERR_NOT_FOUND, ERR_PROVIDER_UNKNOWN]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReleaseTarget(_Model):
    """What every workload/router activity acts on: the canary (spec only, no secrets) and its revision."""

    canary: Canary
    revision: str = ""
    image: str | None = None  # `canaryflow release --image`: the new version the target is set to

    @property
    def key(self) -> str:
        return f"{self.canary.metadata.namespace}/{self.canary.metadata.name}"


class ReadinessCheck(_Model):
    target: ReleaseTarget
    workload: Literal["primary", "canary"]
    # Readiness threshold in percent of updated replicas that must be available (Flagger's *ReadyThreshold).
    threshold_percent: int = 100
    # Seconds since the rollout started that the workload may take before ProgressDeadlineExceeded.
    progress_deadline_seconds: int = 600
    rollout_started_at: float = 0.0  # unix seconds, set by the workflow from workflow.now()


class SessionAffinityRoute(_Model):
    cookie_name: str
    cookie_value: str
    max_age: int = 86400
    previous_cookie: str = ""
    primary_cookie_name: str = ""
    primary_cookie_value: str = ""


class Routes(_Model):
    primary_weight: int = Field(ge=0, le=100)
    canary_weight: int = Field(ge=0, le=100)
    mirrored: bool = False


class SetRoutes(_Model):
    target: ReleaseTarget
    routes: Routes
    session_affinity: SessionAffinityRoute | None = None


class MetricQuery(_Model):
    """One metric check. The workflow passes the canary metric and its resolved template (no secret values)."""

    target: ReleaseTarget
    metric_name: str
    template: MetricTemplate | None = None  # None for builtin metrics (request-success-rate, request-duration)
    inline_query: str | None = None  # Flagger's deprecated `metric.query`: PromQL against the canary's metrics server
    interval: str = "1m"
    variables: dict[str, str] = Field(default_factory=dict)
    # Seconds since traffic last changed. Providers shrink their query window to it so a window never spans the
    # previous step (a 1m window right after a step still holds the old weight's errors). None = unknown.
    since_last_route_change_seconds: float | None = None


class MetricValue(_Model):
    """Result of a metric query. `value is None` means the provider found no values (Flagger's ErrNoValuesFound)."""

    value: float | None
    query: str = ""


class WebhookCall(_Model):
    name: str
    type: str
    url: str
    timeout_seconds: float = 10.0
    retries: int = 0
    disable_tls: bool = False
    # Flagger's CanaryWebhookPayload: name, namespace, phase, checksum, metadata.
    payload: dict[str, Any]


class WebhookResult(_Model):
    ok: bool
    status_code: int | None = None
    message: str = ""
    attempts: int = 1


class Alert(_Model):
    canary_name: str
    canary_namespace: str
    provider: AlertProvider
    severity: Literal["info", "warn", "error"]
    message: str
    fields: dict[str, str] = Field(default_factory=dict)


class AlertResult(_Model):
    delivered: bool
    message: str = ""


class InitializeResult(_Model):
    """What `workload.initialize` found. `needs_analysis=False`: the canary runs what the primary runs (Flagger's
    first sight of a canary: bootstrap and stop at Initialized)."""

    needs_analysis: bool = True
    primary_bootstrapped: bool = False
    message: str = ""


class ReportedDecision(_Model):
    index: int  # position in the release's decision log since it started (stable across continue-as-new)
    at: datetime
    phase: str
    kind: str  # event | warning | command | metric | webhook | gate | phase
    message: str
    actor: str = ""


class StatusReport(_Model):
    """The release's state, sent to the status sinks (Canary status + Events, worker metrics) whenever it changes.

    Reports of one release are sent one at a time, in order, latest state wins (coalesced while one is in flight).
    Carries no spec beyond identity, so it stays small in history.
    """

    workflow_id: str
    canary_api_version: str  # e.g. flagger.app/v1beta1 or canaryflow.dev/v1beta1: which Canary object to update
    name: str
    namespace: str
    target_kind: str
    target_name: str
    provider: str  # the router (spec.provider or "kubernetes")
    platform: Literal["kubernetes", "local"]
    revision: str
    phase: str
    strategy: str = "canary"  # canary | ab-testing | blue-green | blue-green-mirroring
    skipped_analysis: bool = False  # spec.skipAnalysis: promoted without analysis
    primary_weight: int
    canary_weight: int
    mirrored: bool = False
    iterations: int = 0
    failed_checks: int = 0
    threshold: int = 1
    last_transition_time: datetime
    started_at: datetime | None = None  # when the current revision's analysis (or initialization) started
    finished: bool = False  # the release ended (Succeeded / Failed / Initialized-only)
    outcome: str = ""
    last_metrics: dict[str, float | None] = Field(default_factory=dict)
    # Decision-log entries not reported before (at most the last 50), for Kubernetes Events.
    new_decisions: list[ReportedDecision] = Field(default_factory=list)
    sequence: int = 0  # increases with every report of this workflow run chain


class StatusReportResult(_Model):
    delivered: list[str] = Field(default_factory=list)  # names of sinks that applied the report
    failed: dict[str, str] = Field(default_factory=dict)  # sink name -> reason
