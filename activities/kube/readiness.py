"""Readiness of a Deployment or DaemonSet (Flagger's deployment_ready.go / daemonset_ready.go), as pure functions.

A workload is ready when the controller observed its latest generation, every replica runs the new template and
at least `threshold`% of them are available. Flagger's messages are kept word for word since users grep them.
A rollout is stuck for good (not retryable) when the Deployment controller reports ProgressDeadlineExceeded,
when `Available=False/MinimumReplicasUnavailable` has lasted longer than the deadline, or when the rollout has
not finished `deadline_seconds` after it started.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Readiness:
    ready: bool
    retryable: bool = True
    message: str = ""


READY = Readiness(ready=True)


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def threshold_count(count: int, threshold_percent: int) -> int:
    """`int32(float32(count) * float32(threshold)/100)`, computed in float32 like Flagger."""
    ratio = _float32(_float32(threshold_percent) / 100.0)
    return int(_float32(_float32(count) * ratio))


def _condition(status: Mapping[str, Any], condition_type: str) -> Mapping[str, Any] | None:
    conditions: list[Mapping[str, Any]] = status.get("conditions") or []
    for condition in conditions:
        if condition.get("type") == condition_type:
            return condition
    return None


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _past_deadline(started_at: float, deadline_seconds: int, now: float) -> bool:
    return started_at > 0 and started_at + deadline_seconds < now


def deployment_readiness(
    deployment: Mapping[str, Any],
    *,
    threshold_percent: int,
    deadline_seconds: int,
    started_at: float,
    now: float,
) -> Readiness:
    metadata, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status") or {}
    if metadata.get("generation", 0) > status.get("observedGeneration", 0):
        waiting = "waiting for rollout to finish: observed deployment generation less than desired generation"
        return _with_deadline(Readiness(False, True, waiting), started_at, deadline_seconds, now)
    retryable = True
    progressing = _condition(status, "Progressing")
    available = _condition(status, "Available")
    if (
        progressing is not None
        and available is not None
        and available.get("status") == "False"
        and available.get("reason") == "MinimumReplicasUnavailable"
    ):
        since = _timestamp(available.get("lastUpdateTime"))
        retryable = not (since is not None and since + deadline_seconds < now)
    updated = int(status.get("updatedReplicas", 0))
    replicas = spec.get("replicas")
    ready_needed = threshold_count(updated, threshold_percent)
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(False, False, f'deployment "{metadata.get("name")}" exceeded its progress deadline')
    if replicas is not None and updated < int(replicas):
        message = f"waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated"
    elif int(status.get("replicas", 0)) > updated:
        pending = int(status.get("replicas", 0)) - updated
        message = f"waiting for rollout to finish: {pending} old replicas are pending termination"
    elif int(status.get("availableReplicas", 0)) < ready_needed:
        message = (
            f"waiting for rollout to finish: {int(status.get('availableReplicas', 0))} of {ready_needed} "
            f"(readyThreshold {threshold_percent}%) updated replicas are available"
        )
    else:
        return READY
    return _with_deadline(Readiness(False, retryable, message), started_at, deadline_seconds, now)


def daemonset_readiness(
    daemonset: Mapping[str, Any],
    *,
    threshold_percent: int,
    deadline_seconds: int,
    started_at: float,
    now: float,
) -> Readiness:
    metadata, status = daemonset.get("metadata", {}), daemonset.get("status") or {}
    if metadata.get("generation", 0) > status.get("observedGeneration", 0):
        waiting = "waiting for rollout to finish: observed daemonset generation less than desired generation"
        return _with_deadline(Readiness(False, True, waiting), started_at, deadline_seconds, now)
    desired = int(status.get("desiredNumberScheduled", 0))
    updated = int(status.get("updatedNumberScheduled", 0))
    available = int(status.get("numberAvailable", 0))
    ready_needed = threshold_count(desired, threshold_percent)
    if updated >= desired and available >= ready_needed:
        return READY
    if _past_deadline(started_at, deadline_seconds, now):
        return Readiness(False, False, f"exceeded its progressDeadlineSeconds: {deadline_seconds}")
    if updated < desired:
        return Readiness(
            False, True, f"waiting for rollout to finish: {updated} out of {desired} new pods have been updated"
        )
    return Readiness(
        False,
        True,
        f"waiting for rollout to finish: {available} of {ready_needed} (readyThreshold {threshold_percent}%) "
        "updated pods are available",
    )


def _with_deadline(readiness: Readiness, started_at: float, deadline_seconds: int, now: float) -> Readiness:
    """A rollout still unfinished `deadline_seconds` after it started is stuck for good."""
    if readiness.retryable and _past_deadline(started_at, deadline_seconds, now):
        return Readiness(False, False, f"{readiness.message} (progress deadline of {deadline_seconds}s exceeded)")
    return readiness
