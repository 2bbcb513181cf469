"""The Kubernetes status sink: a release's state becomes its Canary's `status` and Kubernetes Events, like Flagger.

- `status` (subresource, Flagger's fields): phase, canaryWeight, failedChecks, iterations, lastAppliedSpec (the
  revision), lastPromotedSpec (set on Initialized and Succeeded), trackedConfigs, lastTransitionTime and the one
  `Promoted` condition with Flagger's reason (= phase), status and message per phase, so
  `kubectl wait canary/x --for=condition=promoted` works in CI.
- Reports can arrive twice or out of order (activity retries): the last applied report's position is kept in the
  annotation `canaryflow.dev/status-report`; an older or equal report leaves the status alone. A Flagger CRD prunes
  unknown status fields, so the position cannot live in `status`.
- Each `event`/`warning` decision becomes one core/v1 Event (reason `Synced`, Normal/Warning) whose name is derived
  from the release and the decision, so a retried report never creates it twice.
- No Canary object (CI mode without a custom resource, or the CRD is not installed) makes the report a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.contracts import ReportedDecision, StatusReport
from activities.kube.client import is_not_found, retry_on_conflict
from workflows.decisions import event_type

log = logging.getLogger(__name__)

CANARY_PLURAL = "canaries"
REPORT_ANNOTATION = "canaryflow.dev/status-report"
PROMOTED_CONDITION = "Promoted"
EVENT_REASON = "Synced"
EVENT_SOURCE_COMPONENT = "flagger"  # what Flagger's events carry: dashboards and alerts filter on it
REPORTING_CONTROLLER = "canaryflow.dev/worker"

# Flagger's setStatusPhase keeps the weight only in these phases (WaitingPromotion shows 0: a Flagger quirk).
_WEIGHT_PHASES = frozenset({"Progressing", "Waiting", "Promoting", "Failed"})
_ITERATION_PHASES = frozenset({"Progressing", "Waiting", "Promoting", "WaitingPromotion"})
# A new revision's first status: Flagger's SyncStatus refreshes trackedConfigs then.
_SYNC_PHASES = frozenset({"Initializing", "Initialized", "Progressing", "Failed", "Succeeded"})


def promoted_condition(phase: str, target_kind: str) -> tuple[str, str]:
    """(status, message) of the `Promoted` condition for a phase (Flagger's MakeStatusConditions)."""
    conditions = {
        "Initializing": ("Unknown", f"New {target_kind} detected, starting initialization."),
        "Initialized": ("True", f"{target_kind} initialization completed."),
        "Waiting": ("Unknown", "Waiting for approval."),
        "WaitingPromotion": ("Unknown", "Waiting for approval."),
        "Progressing": ("Unknown", "New revision detected, progressing canary analysis."),
        "Promoting": ("Unknown", "Canary analysis completed, starting primary rolling update."),
        "Finalising": ("Unknown", "Canary analysis completed, routing all traffic to primary."),
        "Succeeded": ("True", "Canary analysis completed successfully, promotion finished."),
        "Failed": ("False", f"Canary analysis failed, {target_kind} scaled to zero."),
    }
    # Flagger's default branch (e.g. Terminating) keeps the initialization message.
    return conditions.get(phase, ("Unknown", f"New {target_kind} detected, starting initialization."))


def kube_time(moment: datetime) -> str:
    """RFC 3339 with second precision, as metav1.Time serializes."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_position(report: StatusReport) -> tuple[str, int]:
    """Orders the reports of one Canary: a later release (or revision) first, then the report sequence.

    `started_at` only moves forward within a release and a new release starts after the previous one ended.
    """
    started = report.started_at or report.last_transition_time
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return started.astimezone(UTC).isoformat(timespec="microseconds"), report.sequence


def stored_position(canary: dict[str, Any]) -> tuple[str, int] | None:
    raw = (canary.get("metadata", {}).get("annotations") or {}).get(REPORT_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return str(data["startedAt"]), int(data["sequence"])
    except (ValueError, KeyError, TypeError):
        return None


def build_conditions(current: list[dict[str, Any]] | None, phase: str, target_kind: str, now: str) -> list[Any]:
    """The new `conditions` list: unchanged when status and reason are; lastTransitionTime kept while status is."""
    status, message = promoted_condition(phase, target_kind)
    existing = next((c for c in current or [] if c.get("type") == PROMOTED_CONDITION), None)
    if existing is not None and existing.get("status") == status and existing.get("reason") == phase:
        return list(current or [])
    transition = existing.get("lastTransitionTime", now) if existing and existing.get("status") == status else now
    return [
        {
            "type": PROMOTED_CONDITION,
            "status": status,
            "reason": phase,
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": transition,
        }
    ]


def build_status(
    current: dict[str, Any], report: StatusReport, tracked_configs: dict[str, str] | None
) -> dict[str, Any]:
    """The Canary `status` after `report`, keeping fields the report does not own (session cookies...)."""
    now = kube_time(report.last_transition_time)
    status = dict(current)
    status["phase"] = report.phase
    status["canaryWeight"] = report.canary_weight if report.phase in _WEIGHT_PHASES else 0
    status["iterations"] = report.iterations if report.phase in _ITERATION_PHASES else 0
    status["failedChecks"] = report.failed_checks
    status["lastAppliedSpec"] = report.revision
    if report.phase == "Succeeded" or (report.phase == "Initialized" and report.finished):
        # Initialized promotes only when the release ends there (the target runs the primary's revision); an
        # Initialized on the way to an analysis has promoted nothing yet.
        status["lastPromotedSpec"] = report.revision
    if tracked_configs is not None:
        status["trackedConfigs"] = tracked_configs
    status["lastTransitionTime"] = now
    status["conditions"] = build_conditions(current.get("conditions"), report.phase, report.target_kind, now)
    return status


def is_transient_initialization(current: dict[str, Any], report: StatusReport) -> bool:
    """A release of an already initialized Canary passes through Initializing/Initialized while it checks the
    primary. Flagger shows these phases only on a Canary's first sight (a new revision goes from Succeeded or
    Failed straight to Progressing), and Initialized would mark the unanalysed revision as promoted."""
    return (
        report.phase in ("Initializing", "Initialized")
        and not report.finished
        and bool(current.get("lastPromotedSpec"))
    )


def event_name(report: StatusReport, decision: ReportedDecision) -> str:
    """Deterministic per decision of a release: the same decision reported twice names the same Event."""
    key = f"{report.workflow_id}|{decision.index}|{decision.at.isoformat()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{report.name[:200]}.{digest}"


def event_body(report: StatusReport, decision: ReportedDecision, canary: dict[str, Any]) -> dict[str, Any]:
    return canary_event(
        canary,
        name=event_name(report, decision),
        message=decision.message,
        warning=decision.kind == "warning",
        at=kube_time(decision.at),
        reporter=(REPORTING_CONTROLLER, report.workflow_id),
    )


def canary_event(
    canary: dict[str, Any], *, name: str, message: str, warning: bool, at: str, reporter: tuple[str, str]
) -> dict[str, Any]:
    """A core v1 Event on a Canary as Flagger records it (reason Synced, source flagger)."""
    metadata = canary.get("metadata", {})
    component, instance = reporter
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": metadata.get("namespace")},
        "involvedObject": {
            "apiVersion": canary.get("apiVersion"),
            "kind": "Canary",
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "reason": EVENT_REASON,
        "message": message,
        "type": event_type(warning),
        "source": {"component": EVENT_SOURCE_COMPONENT},
        "reportingComponent": component,
        "reportingInstance": instance[:128],
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


class KubernetesStatusSink:
    """Writes reports of Kubernetes releases to their Canary objects (status + Events)."""

    name = "kubernetes"

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._api_client = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)

    async def publish(self, report: StatusReport) -> None:
        if report.platform != "kubernetes":
            return
        stored = await asyncio.to_thread(self._read_canary, report)
        if stored is None:
            return
        tracked = await self._tracked_configs(report, stored)
        canary = await asyncio.to_thread(self._apply_status, report, tracked, stored)
        if canary is None:
            return
        decisions = [d for d in report.new_decisions if d.kind in ("event", "warning")]
        if decisions:
            await asyncio.to_thread(self._emit_events, report, decisions, canary)

    # -- status --------------------------------------------------------------------------------------------------

    def _group_version(self, report: StatusReport) -> tuple[str, str]:
        group, _, version = report.canary_api_version.partition("/")
        return group, version

    def _read_canary(self, report: StatusReport) -> dict[str, Any] | None:
        group, version = self._group_version(report)
        try:
            canary: dict[str, Any] = self._custom.get_namespaced_custom_object(
                group, version, report.namespace, CANARY_PLURAL, report.name
            )
        except ApiException as error:
            if is_not_found(error):  # no Canary object, or its CRD is not installed
                return None
            raise
        return canary

    def _apply_status(
        self, report: StatusReport, tracked: dict[str, str] | None, stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Write the status if the report is newer than the stored one; the Canary as last read (None: absent).

        The first attempt uses `stored` (just read); a conflict means someone wrote since, so retries read afresh.
        """
        group, version = self._group_version(report)
        position = report_position(report)
        marker = json.dumps({"startedAt": position[0], "sequence": position[1], "workflowId": report.workflow_id})
        unused_read: dict[str, Any] | None = stored

        def write() -> dict[str, Any] | None:
            nonlocal unused_read
            canary = unused_read or self._read_canary(report)
            unused_read = None
            if canary is None:
                return None
            stored = stored_position(canary)
            if stored is not None and stored >= position:
                return canary  # a duplicate or an older report: the stored status is newer
            current_status = canary.get("status") or {}
            if is_transient_initialization(current_status, report):
                return canary
            keep_tracked = tracked
            if keep_tracked is None and current_status.get("lastAppliedSpec") == report.revision:
                keep_tracked = current_status.get("trackedConfigs")
            new_status = build_status(current_status, report, keep_tracked)
            # The marker first, guarded by the resourceVersion just read: a concurrent writer makes this a 409 and
            # the whole read-compare-write starts again. The status write is then guarded by the marker's version.
            marked: dict[str, Any] = self._custom.patch_namespaced_custom_object(
                group,
                version,
                report.namespace,
                CANARY_PLURAL,
                report.name,
                {
                    "metadata": {
                        "resourceVersion": canary["metadata"]["resourceVersion"],
                        "annotations": {REPORT_ANNOTATION: marker},
                    }
                },
            )
            body = {
                "apiVersion": canary.get("apiVersion", report.canary_api_version),
                "kind": "Canary",
                "metadata": {
                    "name": report.name,
                    "namespace": report.namespace,
                    "resourceVersion": marked["metadata"]["resourceVersion"],
                },
                "status": new_status,
            }
            if new_status == current_status:
                return marked
            written: dict[str, Any] = self._custom.replace_namespaced_custom_object_status(
                group, version, report.namespace, CANARY_PLURAL, report.name, body
            )
            return written

        try:
            return retry_on_conflict(write)
        except ApiException as error:
            if is_not_found(error):  # deleted between read and write
                return None
            raise

    async def _tracked_configs(self, report: StatusReport, stored: dict[str, Any]) -> dict[str, str] | None:
        """The target's tracked ConfigMaps/Secrets when a revision is (re)synced; None = leave them as stored."""
        if report.phase not in _SYNC_PHASES:
            return None
        current = stored.get("status") or {}
        if current.get("lastAppliedSpec") == report.revision and current.get("trackedConfigs") is not None:
            return None
        from activities.kube.revision import tracked_configs
        from canaryflow.loader import parse_resource
        from canaryflow.spec import Canary

        try:
            canary = parse_resource(stored)
            if not isinstance(canary, Canary):
                return None
            return await asyncio.to_thread(tracked_configs, self._api_client, canary)
        except Exception as error:  # status must not fail for want of config checksums
            log.warning("trackedConfigs of %s/%s not computed: %s", report.namespace, report.name, error)
            return None

    # -- events --------------------------------------------------------------------------------------------------

    def _emit_events(self, report: StatusReport, decisions: list[ReportedDecision], canary: dict[str, Any]) -> None:
        for decision in decisions:
            body = event_body(report, decision, canary)
            try:
                self._core.create_namespaced_event(report.namespace, body)
            except ApiException as error:
                if error.status == 409:  # AlreadyExists: a retried report
                    continue
                raise
