"""Deployment targets: the kind's copied fields and scaling (Flagger's deployment_controller.go)."""

from __future__ import annotations

from kubernetes.client import ApiClient

from activities.kube import autoscalers, rest
from activities.kube.names import primary_name
from activities.kube.primary import WorkloadKind
from canaryflow.spec import Canary

DEPLOYMENT = WorkloadKind(
    resource=rest.DEPLOYMENTS,
    copied_spec_fields=("progressDeadlineSeconds", "minReadySeconds", "revisionHistoryLimit", "strategy"),
    scalable=True,
    spread_to_primary=True,
)


def scale(api: ApiClient, namespace: str, name: str, replicas: int) -> None:
    """Set absolute replicas (a merge patch: idempotent and free of conflicts; skipped when already so). Blocking."""
    current = rest.read(api, rest.DEPLOYMENTS, namespace, name)
    if current.get("spec", {}).get("replicas") != replicas:
        rest.merge_patch(api, rest.DEPLOYMENTS, namespace, name, {"spec": {"replicas": replicas}})


def scale_up_replicas(api: ApiClient, canary: Canary) -> int:
    """Flagger's ScaleFromZero count: the target's replicas if set, else the primary's (no autoscaler), else the
    autoscaler's minimum if above 1, else 1. Blocking."""
    namespace, target_name = canary.metadata.namespace, canary.spec.target_ref.name
    target = rest.read(api, rest.DEPLOYMENTS, namespace, target_name)
    replicas = int(target.get("spec", {}).get("replicas") or 0)
    if replicas > 0:
        return replicas
    if canary.spec.autoscaler_ref is None:
        primary = rest.read(api, rest.DEPLOYMENTS, namespace, primary_name(target_name))
        return int(primary.get("spec", {}).get("replicas") or 0) or 1
    minimum = autoscalers.scaler_min_replicas(api, canary)
    return minimum if minimum is not None and minimum > 1 else 1
