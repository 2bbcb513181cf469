"""Edits of a pod spec (raw JSON) made when copying the target to the primary, and the CI image update."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC
from activities.kube.names import primary_name


def image_repository(image: str) -> str:
    """`registry:5000/team/app:v2@sha256:..` -> `registry:5000/team/app` (the tag follows the last `/`)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def set_container_image(pod_spec: dict[str, Any], image: str) -> bool:
    """Set `image` on the container running the same repository, else on the first container.

    Returns True when the pod spec changed.
    """
    containers: list[dict[str, Any]] = pod_spec.get("containers") or []
    if not containers:
        raise ApplicationError("the target's pod template has no containers", type=ERR_INVALID_SPEC, non_retryable=True)
    repository = image_repository(image)
    container = next((c for c in containers if image_repository(str(c.get("image", ""))) == repository), containers[0])
    if container.get("image") == image:
        return False
    container["image"] = image
    return True


def _suffix_selector(selector: dict[str, Any] | None, selector_labels: Sequence[str], target_name: str) -> None:
    if not selector:
        return
    for expression in selector.get("matchExpressions") or []:
        if expression.get("key") in selector_labels:
            values: list[str] = expression.get("values") or []
            for index, value in enumerate(values):
                if value == target_name:
                    values[index] = primary_name(value)
                    break
    match_labels: dict[str, str] = selector.get("matchLabels") or {}
    for key, value in match_labels.items():
        if key in selector_labels and value == target_name:
            match_labels[key] = primary_name(value)


def point_spread_at_primary(pod_spec: dict[str, Any], selector_labels: Sequence[str], target_name: str) -> None:
    """Topology spread constraints and pod anti-affinity that select the target's pods select the primary's."""
    for constraint in pod_spec.get("topologySpreadConstraints") or []:
        _suffix_selector(constraint.get("labelSelector"), selector_labels, target_name)
    anti_affinity = (pod_spec.get("affinity") or {}).get("podAntiAffinity") or {}
    for preferred in anti_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        _suffix_selector((preferred.get("podAffinityTerm") or {}).get("labelSelector"), selector_labels, target_name)
    for required in anti_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        _suffix_selector(required.get("labelSelector"), selector_labels, target_name)
