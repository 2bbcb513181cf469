"""Label and annotation handling of the generated `-primary` objects (Flagger's pkg/canary/util.go rules).

- The selector label is the first of `app`, `name`, `app.kubernetes.io/name` found in the workload's
  `spec.selector.matchLabels`; the primary's value is `<value>-primary`.
- Object labels/annotations are copied to generated objects only when their key starts with one of the
  include-label prefixes (`*` = all; none by default). Pod-template labels are always copied.
- Keys containing `toolkit.fluxcd.io` are never copied, so Flux does not garbage-collect the generated objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC

SELECTOR_LABELS: tuple[str, ...] = ("app", "name", "app.kubernetes.io/name")
TOOLKIT_MARKER = "toolkit.fluxcd.io"
POD_ID_ANNOTATION = "flagger-id"  # a fresh value on every promotion forces the primary to roll
KUBECTL_LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


def selector_label(workload: Mapping[str, Any], selector_labels: Sequence[str] = SELECTOR_LABELS) -> tuple[str, str]:
    """(key, value) of the label that selects the workload's pods; InvalidSpec when none of the known keys is there."""
    match_labels = workload.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    for key in selector_labels:
        if key in match_labels:
            return key, str(match_labels[key])
    metadata = workload.get("metadata", {})
    raise ApplicationError(
        f"{str(workload.get('kind', 'workload')).lower()} {metadata.get('name')}.{metadata.get('namespace')} "
        f"spec.selector.matchLabels must contain one of {list(selector_labels)}",
        type=ERR_INVALID_SPEC,
        non_retryable=True,
    )


def without_toolkit_keys(values: Mapping[str, str] | None) -> dict[str, str]:
    return {key: value for key, value in (values or {}).items() if TOOLKIT_MARKER not in key}


def include_by_prefix(values: Mapping[str, str] | None, prefixes: Sequence[str]) -> dict[str, str]:
    """The entries whose key starts with one of `prefixes` (`*` matches every key)."""
    included: dict[str, str] = {}
    for key, value in without_toolkit_keys(values).items():
        if any(prefix == "*" or (prefix and key.startswith(prefix)) for prefix in prefixes):
            included[key] = value
    return included


def primary_labels(labels: Mapping[str, str] | None, selector_key: str, primary_value: str) -> dict[str, str]:
    """`labels` with the selector label pointing at the primary's pods."""
    result = {key: value for key, value in without_toolkit_keys(labels).items() if key != selector_key}
    result[selector_key] = primary_value
    return result


def pod_annotations_with_new_id(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """Pod-template annotations for the primary: the target's plus a new `flagger-id`, which makes the primary roll."""
    result = {key: value for key, value in without_toolkit_keys(annotations).items() if key != POD_ID_ANNOTATION}
    result[POD_ID_ANNOTATION] = str(uuid.uuid4())
    return result


# DaemonSets cannot be scaled: Flagger "scales them to zero" with a node selector no node matches.
SCALE_TO_ZERO_NODE_SELECTOR: dict[str, str] = {"flagger.app/scale-to-zero": "true"}
