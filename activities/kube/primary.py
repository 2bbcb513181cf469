"""The `<target>-primary` workload built from the target (Flagger's createPrimary* and Promote, for raw JSON).

The primary runs the target's pod template with: the selector label's value suffixed `-primary` (selector,
template labels and object labels), references to tracked ConfigMaps/Secrets pointing at their `-primary`
copies, a fresh `flagger-id` pod annotation (so a config-only promotion still rolls the pods), and the
revision it runs in the `canaryflow.dev/revision` annotation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from activities.kube import rest
from activities.kube.configs import apply_primary_configs
from activities.kube.labels import (
    KUBECTL_LAST_APPLIED_ANNOTATION,
    POD_ID_ANNOTATION,
    SCALE_TO_ZERO_NODE_SELECTOR,
    include_by_prefix,
    pod_annotations_with_new_id,
    primary_labels,
    without_toolkit_keys,
)
from activities.kube.names import primary_name
from activities.kube.podspec import point_spread_at_primary

REVISION_ANNOTATION = "canaryflow.dev/revision"
# Written by kubectl / the Deployment controller for the target itself; meaningless on the primary.
_NOT_COPIED_ANNOTATIONS = (KUBECTL_LAST_APPLIED_ANNOTATION, "deployment.kubernetes.io/revision")


@dataclass(frozen=True)
class WorkloadKind:
    resource: rest.Resource
    copied_spec_fields: tuple[str, ...]  # spec fields copied from the target at bootstrap and promotion
    scalable: bool  # Deployments have replicas; DaemonSets run one pod per node
    spread_to_primary: bool  # rewrite topology spread / anti-affinity selectors (Flagger: Deployments only)


@dataclass(frozen=True)
class Selector:
    key: str
    value: str  # the target's value; the primary's is `<value>-primary`

    @property
    def primary_value(self) -> str:
        return primary_name(self.value)


def primary_template(
    kind: WorkloadKind,
    target: Mapping[str, Any],
    tracked: Mapping[str, Any],
    selector: Selector,
    selector_labels: Sequence[str],
) -> dict[str, Any]:
    template = target["spec"]["template"]
    template_meta = template.get("metadata") or {}
    pod_spec = apply_primary_configs(template.get("spec") or {}, tracked)
    if kind.spread_to_primary:
        point_spread_at_primary(pod_spec, selector_labels, target["metadata"]["name"])
    node_selector: dict[str, str] = pod_spec.get("nodeSelector") or {}
    for key in SCALE_TO_ZERO_NODE_SELECTOR:
        node_selector.pop(key, None)
    if "nodeSelector" in pod_spec and not node_selector:
        del pod_spec["nodeSelector"]
    metadata = copy.deepcopy(dict(template_meta))
    metadata["labels"] = primary_labels(template_meta.get("labels"), selector.key, selector.primary_value)
    metadata["annotations"] = pod_annotations_with_new_id(template_meta.get("annotations"))
    return {"metadata": metadata, "spec": pod_spec}


def _target_replicas(target: Mapping[str, Any]) -> int | None:
    replicas = target.get("spec", {}).get("replicas")
    return int(replicas) if replicas is not None else None


def new_primary(
    kind: WorkloadKind,
    target: Mapping[str, Any],
    template: dict[str, Any],
    selector: Selector,
    *,
    include_label_prefixes: Sequence[str],
    owner: Mapping[str, Any] | None,
    revision: str,
) -> rest.JsonObject:
    """The primary created at bootstrap."""
    target_meta = target["metadata"]
    annotations = without_toolkit_keys(target_meta.get("annotations"))
    for key in _NOT_COPIED_ANNOTATIONS:
        annotations.pop(key, None)
    annotations[REVISION_ANNOTATION] = revision
    metadata: dict[str, Any] = {
        "name": primary_name(target_meta["name"]),
        "labels": primary_labels(
            include_by_prefix(target_meta.get("labels"), include_label_prefixes), selector.key, selector.primary_value
        ),
        "annotations": annotations,
    }
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    spec: dict[str, Any] = {
        field: copy.deepcopy(target["spec"][field]) for field in kind.copied_spec_fields if field in target["spec"]
    }
    spec["selector"] = {"matchLabels": {selector.key: selector.primary_value}}
    spec["template"] = template
    if kind.scalable:
        spec["replicas"] = max(_target_replicas(target) or 0, 0) or 1
    return {"metadata": metadata, "spec": spec}


def promoted_primary(
    kind: WorkloadKind,
    target: Mapping[str, Any],
    primary: Mapping[str, Any],
    template: dict[str, Any],
    selector: Selector,
    *,
    include_label_prefixes: Sequence[str],
    copy_replicas: bool,
    revision: str,
) -> rest.JsonObject | None:
    """The primary after promotion, or None when it already runs `revision` exactly as built (no new rollout)."""
    promoted: dict[str, Any] = copy.deepcopy(dict(primary))
    spec = promoted.setdefault("spec", {})
    for field in kind.copied_spec_fields:
        if field in target["spec"]:
            spec[field] = copy.deepcopy(target["spec"][field])
        else:
            spec.pop(field, None)
    if kind.scalable and copy_replicas and _target_replicas(target) is not None:
        spec["replicas"] = _target_replicas(target)
    current_annotations = (primary.get("metadata") or {}).get("annotations") or {}
    if current_annotations.get(REVISION_ANNOTATION) == revision:
        # Same revision: keep the pod id so a repeated promotion does not roll the primary again.
        current_id = ((primary["spec"]["template"].get("metadata") or {}).get("annotations") or {}).get(
            POD_ID_ANNOTATION
        )
        if current_id is not None:
            template["metadata"]["annotations"][POD_ID_ANNOTATION] = current_id
    spec["template"] = template
    target_meta = target["metadata"]
    metadata = promoted.setdefault("metadata", {})
    annotations = include_by_prefix(target_meta.get("annotations"), include_label_prefixes)
    annotations[REVISION_ANNOTATION] = revision
    metadata["annotations"] = annotations
    metadata["labels"] = primary_labels(
        include_by_prefix(target_meta.get("labels"), include_label_prefixes), selector.key, selector.primary_value
    )
    if promoted == primary:
        return None
    return promoted


def recorded_revision(primary: Mapping[str, Any] | None) -> str | None:
    if primary is None:
        return None
    annotations: Mapping[str, str] = (primary.get("metadata") or {}).get("annotations") or {}
    return annotations.get(REVISION_ANNOTATION)
