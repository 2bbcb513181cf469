"""DaemonSet targets (Flagger's daemonset_controller.go).

A DaemonSet cannot be scaled: "zero" is a node selector no node matches (`flagger.app/scale-to-zero: "true"`),
removed again to scale it up. The primary must use the RollingUpdate strategy.
"""

from __future__ import annotations

from kubernetes.client import ApiClient
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC
from activities.kube import rest
from activities.kube.labels import SCALE_TO_ZERO_NODE_SELECTOR
from activities.kube.primary import WorkloadKind

DAEMONSET = WorkloadKind(
    resource=rest.DAEMONSETS,
    copied_spec_fields=("minReadySeconds", "revisionHistoryLimit", "updateStrategy"),
    scalable=False,
    spread_to_primary=False,
)


def check_update_strategy(daemonset: rest.JsonObject) -> None:
    strategy = (daemonset.get("spec", {}).get("updateStrategy") or {}).get("type", "")
    if strategy not in ("", "RollingUpdate"):
        metadata = daemonset["metadata"]
        raise ApplicationError(
            f"daemonset {metadata['name']}.{metadata.get('namespace')} must have RollingUpdate strategy "
            f"but have {strategy}",
            type=ERR_INVALID_SPEC,
            non_retryable=True,
        )


def set_scaled_to_zero(api: ApiClient, namespace: str, name: str, zero: bool) -> None:
    """Add (zero) or remove the scale-to-zero node selector, conflict-safe and idempotent. Blocking."""

    def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
        if current is None:
            return None
        pod_spec = current["spec"]["template"].setdefault("spec", {})
        node_selector: dict[str, str] = dict(pod_spec.get("nodeSelector") or {})
        before = dict(node_selector)
        for key, value in SCALE_TO_ZERO_NODE_SELECTOR.items():
            if zero:
                node_selector[key] = value
            else:
                node_selector.pop(key, None)
        if node_selector == before:
            return None
        if node_selector:
            pod_spec["nodeSelector"] = node_selector
        else:
            pod_spec.pop("nodeSelector", None)
        return current

    if rest.upsert(api, rest.DAEMONSETS, namespace, name, build) is None:
        rest.read(api, rest.DAEMONSETS, namespace, name)  # raise NotFound for a missing target
