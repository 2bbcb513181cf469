"""A simulated controller-manager for Deployments and DaemonSets: writes the status a real rollout would reach.

It reacts synchronously inside the server on every spec write (create, update, patch, scale), so a client read
right after a write sees the simulated status. Its status writes bump resourceVersion and emit MODIFIED events,
like a real controller's UpdateStatus.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from .fake import FakeKube
from .kinds import ResourceType
from .store import SAFE_ALPHANUMS, Obj, Operation, now

Mode = Literal["ready", "stuck", "progress-deadline-exceeded"]
MODES: tuple[Mode, ...] = ("ready", "stuck", "progress-deadline-exceeded")


def _pod_template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(SAFE_ALPHANUMS[byte % len(SAFE_ALPHANUMS)] for byte in digest[:10])


def _condition(previous: list[Obj], kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition keeping its lastTransitionTime while its status does not change (as controllers do)."""
    timestamp = now()
    before = next((c for c in previous if c.get("type") == kind), None)
    transition = before["lastTransitionTime"] if before and before.get("status") == status else timestamp
    updated = (
        before["lastUpdateTime"]
        if before and before.get("status") == status and before.get("reason") == reason
        else timestamp
    )
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": updated,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }


def _without_zeros(status: Obj, always: tuple[str, ...] = ()) -> Obj:
    """Go's `omitempty`: zero counters are absent from the JSON (the client reads them as None)."""
    return {key: value for key, value in status.items() if value != 0 or key in always}


# (status, reason, message) of the Available condition, by whether the minimum of replicas is available.
_AVAILABLE = {
    True: ("True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
    False: ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
}
# (status, reason, end of the message after `ReplicaSet "<name>"`) of the Progressing condition, by mode.
_PROGRESSING: dict[Mode, tuple[str, str, str]] = {
    "ready": ("True", "NewReplicaSetAvailable", "has successfully progressed."),
    "stuck": ("True", "ReplicaSetUpdated", "is progressing."),
    "progress-deadline-exceeded": ("False", "ProgressDeadlineExceeded", "has timed out progressing."),
}


def deployment_status(deployment: Obj, mode: Mode) -> Obj:
    spec, meta = deployment.get("spec") or {}, deployment["metadata"]
    desired = spec.get("replicas", 1)
    updated = desired if mode == "ready" else max(desired - 1, 0)
    replica_set = f"{meta['name']}-{_pod_template_hash(spec.get('template'))}"
    previous = (deployment.get("status") or {}).get("conditions") or []
    available = _condition(previous, "Available", *_AVAILABLE[updated > 0 or desired == 0])
    progressing_status, progressing_reason, progress = _PROGRESSING[mode]
    progressing = _condition(
        previous, "Progressing", progressing_status, progressing_reason, f'ReplicaSet "{replica_set}" {progress}'
    )
    status = _without_zeros(
        {
            "observedGeneration": meta.get("generation", 1),
            "replicas": desired,
            "updatedReplicas": updated,
            "readyReplicas": updated,
            "availableReplicas": updated,
            "unavailableReplicas": desired - updated,
        }
    )
    status["conditions"] = [available, progressing]
    return status


def daemonset_status(daemonset: Obj, mode: Mode, nodes: int) -> Obj:
    updated = nodes if mode == "ready" else max(nodes - 1, 0)
    always = ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady")
    return _without_zeros(
        {
            "currentNumberScheduled": nodes,
            "desiredNumberScheduled": nodes,
            "numberMisscheduled": 0,
            "numberReady": updated,
            "numberAvailable": updated,
            "numberUnavailable": nodes - updated,
            "updatedNumberScheduled": updated,
            "observedGeneration": daemonset["metadata"].get("generation", 1),
        },
        always,
    )


class Kubelet:
    """Per-object modes (by namespace/name, for Deployments and DaemonSets alike) over a default mode."""

    def __init__(self, fake: FakeKube, default_mode: Mode = "ready", *, daemonset_nodes: int = 1) -> None:
        self._check(default_mode)
        self.fake = fake
        self.default_mode: Mode = default_mode
        self.daemonset_nodes = daemonset_nodes
        self.modes: dict[tuple[str, str], Mode] = {}
        fake.store.hooks.append(self._on_write)
        fake.kubelet = self

    @staticmethod
    def _check(mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown kubelet mode {mode!r}; one of {MODES}")

    def mode_for(self, namespace: str, name: str) -> Mode:
        return self.modes.get((namespace, name), self.default_mode)

    def set_mode(self, namespace: str, name: str, mode: Mode) -> None:
        """Switch one workload's simulated rollout; an existing Deployment/DaemonSet is reconciled at once."""
        self._check(mode)
        self.modes[(namespace, name)] = mode
        self.reconcile(namespace, name)

    def set_default_mode(self, mode: Mode) -> None:
        self._check(mode)
        self.default_mode = mode

    def reconcile(self, namespace: str, name: str) -> None:
        for kind in ("Deployment", "DaemonSet"):
            obj = self.fake.get("apps/v1", kind, name, namespace)
            if obj is not None:
                self._write_status(self.fake.resource_type("apps/v1", kind), obj)

    def _on_write(self, resource_type: ResourceType, operation: Operation, old: Obj | None, new: Obj) -> None:
        if operation in ("status", "delete") or resource_type.group != "apps":
            return
        if resource_type.kind in ("Deployment", "DaemonSet") and not new["metadata"].get("deletionTimestamp"):
            self._write_status(resource_type, new)

    def _write_status(self, resource_type: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        mode = self.mode_for(meta.get("namespace", ""), meta["name"])
        if resource_type.kind == "Deployment":
            status = deployment_status(obj, mode)
        else:
            status = daemonset_status(obj, mode, self.daemonset_nodes)
        self.fake.store.write_status(resource_type, meta.get("namespace"), meta["name"], status)
