"""Primary copies of the target's autoscaler (Flagger's hpa_reconciler.go / scaled_object_reconciler.go).

- HPA (`autoscaling/v2`): `<hpa>-primary` scales `<target>-primary` with the target HPA's min/max/metrics/
  behavior (`autoscalerRef.primaryScalerReplicas` overrides min/max). Created at bootstrap, updated on
  promotion. Pausing is a no-op: an HPA does nothing to a Deployment at zero replicas.
- KEDA ScaledObject (`keda.sh/v1alpha1`): `<so>-primary` scales `<target>-primary` with the target's spec;
  trigger queries naming the target (or `<target>-canary`) are rewritten to `<target>-primary`, or replaced by
  `autoscalerRef.primaryScalerQueries[<trigger name>]`; a named KEDA HPA gets `-primary`. The target
  ScaledObject is paused with `autoscaling.keda.sh/paused-replicas: "0"` while the canary is at zero.

All functions are blocking (run them through `run_blocking`), idempotent and conflict-safe.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client import ApiClient

from activities.kube import rest
from activities.kube.labels import include_by_prefix, without_toolkit_keys
from activities.kube.names import primary_name
from canaryflow.spec import AutoscalerRef, Canary

KEDA_PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
_QUERY_PLACEHOLDER = "\0canaryflow-canary\0"


def _ref(canary: Canary) -> AutoscalerRef | None:
    return canary.spec.autoscaler_ref


def _resource(ref: AutoscalerRef) -> rest.Resource:
    return rest.HPAS if ref.kind == "HorizontalPodAutoscaler" else rest.SCALED_OBJECTS


def _override_replicas(spec: dict[str, Any], ref: AutoscalerRef, min_field: str, max_field: str) -> None:
    """`autoscalerRef.primaryScalerReplicas` wins over the bounds copied from the target's autoscaler."""
    replicas = ref.primary_scaler_replicas
    if replicas is None:
        return
    if replicas.min_replicas is not None:
        spec[min_field] = replicas.min_replicas
    if replicas.max_replicas is not None:
        spec[max_field] = replicas.max_replicas


def primary_hpa_spec(canary: Canary, hpa: rest.JsonObject) -> dict[str, Any]:
    ref = _ref(canary)
    assert ref is not None
    spec = hpa.get("spec", {})
    target_ref = spec.get("scaleTargetRef", {})
    result: dict[str, Any] = {
        "scaleTargetRef": {
            **{key: target_ref[key] for key in ("apiVersion", "kind") if key in target_ref},
            "name": primary_name(canary.spec.target_ref.name),
        },
        "maxReplicas": spec.get("maxReplicas"),
    }
    for field in ("minReplicas", "metrics", "behavior"):
        if field in spec:
            result[field] = copy.deepcopy(spec[field])
    _override_replicas(result, ref, "minReplicas", "maxReplicas")
    return result


def _primary_query(canary: Canary, query: str) -> str:
    target = canary.spec.target_ref.name
    # Both `<target>` and `<target>-canary` become `<target>-primary`, never `<target>-primary-primary`.
    rewritten = query.replace(f"{target}-canary", _QUERY_PLACEHOLDER)
    rewritten = rewritten.replace(target, primary_name(target))
    return rewritten.replace(_QUERY_PLACEHOLDER, primary_name(target))


def primary_scaled_object_spec(canary: Canary, scaled_object: rest.JsonObject) -> dict[str, Any]:
    ref = _ref(canary)
    assert ref is not None
    spec = copy.deepcopy(scaled_object.get("spec", {}))
    triggers: list[dict[str, Any]] = spec.get("triggers") or []
    for trigger in triggers:
        metadata = trigger.setdefault("metadata", {})
        if ref.primary_scaler_queries:
            if trigger.get("name") in ref.primary_scaler_queries:
                metadata["query"] = ref.primary_scaler_queries[trigger["name"]]
        elif "query" in metadata:
            metadata["query"] = _primary_query(canary, metadata["query"])
    hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    if hpa_config.get("name"):
        hpa_config["name"] = primary_name(hpa_config["name"])
    target_ref = spec.get("scaleTargetRef") or {}
    result: dict[str, Any] = {
        "scaleTargetRef": {
            **{key: target_ref[key] for key in ("apiVersion", "kind", "envSourceContainerName") if key in target_ref},
            "name": primary_name(canary.spec.target_ref.name),
        }
    }
    for field in (
        "pollingInterval",
        "cooldownPeriod",
        "minReplicaCount",
        "maxReplicaCount",
        "advanced",
        "triggers",
        "fallback",
        "idleReplicaCount",
    ):
        if field in spec:
            result[field] = spec[field]
    _override_replicas(result, ref, "minReplicaCount", "maxReplicaCount")
    return result


def reconcile_primary_scaler(
    api: ApiClient,
    canary: Canary,
    *,
    owner: dict[str, Any] | None,
    include_label_prefixes: list[str],
    init: bool,
) -> None:
    """Create the primary autoscaler if missing; unless `init`, also copy the target's changes to it."""
    ref = _ref(canary)
    if ref is None:
        return
    namespace = canary.metadata.namespace
    target = rest.read(api, _resource(ref), namespace, ref.name)
    is_hpa = ref.kind == "HorizontalPodAutoscaler"
    spec = primary_hpa_spec(canary, target) if is_hpa else primary_scaled_object_spec(canary, target)
    target_meta = target.get("metadata", {})

    def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
        if current is None:
            metadata: dict[str, Any] = {"labels": without_toolkit_keys(target_meta.get("labels"))}
            if not is_hpa:
                annotations = without_toolkit_keys(target_meta.get("annotations"))
                annotations.pop(KEDA_PAUSED_REPLICAS, None)  # a paused target must not pause the primary
                metadata["annotations"] = annotations
            if owner is not None:
                metadata["ownerReferences"] = [owner]
            return {"metadata": metadata, "spec": spec}
        if init:
            return None
        current_meta = current.setdefault("metadata", {})
        # Flagger takes the HPA's metadata from the target HPA, the ScaledObject's from the primary itself.
        meta_source = target_meta if is_hpa else current_meta
        labels = include_by_prefix(meta_source.get("labels"), include_label_prefixes)
        annotations = include_by_prefix(meta_source.get("annotations"), include_label_prefixes)
        if (
            current.get("spec") == spec
            and (current_meta.get("labels") or {}) == labels
            and (current_meta.get("annotations") or {}) == annotations
        ):
            return None
        current["spec"] = spec
        current_meta["labels"] = labels
        current_meta["annotations"] = annotations
        return current

    rest.upsert(api, _resource(ref), namespace, primary_name(ref.name), build)


def _set_paused(api: ApiClient, canary: Canary, paused: bool) -> None:
    ref = _ref(canary)
    if ref is None or ref.kind != "ScaledObject":
        return  # an HPA needs no pause: it leaves a Deployment at zero replicas alone

    def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
        if current is None:
            return None
        annotations: dict[str, str] = current.setdefault("metadata", {}).setdefault("annotations", {})
        if paused == (annotations.get(KEDA_PAUSED_REPLICAS) == "0"):
            return None
        if paused:
            annotations[KEDA_PAUSED_REPLICAS] = "0"
        else:
            annotations.pop(KEDA_PAUSED_REPLICAS, None)
        return current

    rest.upsert(api, rest.SCALED_OBJECTS, canary.metadata.namespace, ref.name, build)


def pause_target_scaler(api: ApiClient, canary: Canary) -> None:
    _set_paused(api, canary, True)


def resume_target_scaler(api: ApiClient, canary: Canary) -> None:
    _set_paused(api, canary, False)


def scaler_min_replicas(api: ApiClient, canary: Canary) -> int | None:
    """The target autoscaler's minimum replicas, or None when there is none (or it cannot be read)."""
    ref = _ref(canary)
    if ref is None:
        return None
    found = rest.read_optional(api, _resource(ref), canary.metadata.namespace, ref.name)
    if found is None:
        return None
    field = "minReplicas" if ref.kind == "HorizontalPodAutoscaler" else "minReplicaCount"
    value = found.get("spec", {}).get(field)
    return int(value) if value is not None else None
