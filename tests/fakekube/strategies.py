"""Per-kind registry rules: defaults filled on create, immutable fields, validation the real apiserver enforces."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable
from typing import Any

from . import errors
from .crds import crd_status
from .errors import invalid
from .kinds import ResourceType

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_APPS_WORKLOADS = {"Deployment", "DaemonSet", "ReplicaSet", "StatefulSet"}


def is_kind(resource_type: ResourceType, group: str, kind: str) -> bool:
    return (resource_type.group, resource_type.kind) == (group, kind)


# (max length, pattern, what the 422 says) of metadata.name: per kind, else a DNS-1123 subdomain.
_NAME_RULES: dict[tuple[str, str], tuple[int, re.Pattern[str], str]] = {
    ("", "Namespace"): (
        63,
        _LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ),
    ("", "Service"): (
        63,
        _DNS1035,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    ),
}
_SUBDOMAIN_RULE = (
    253,
    _SUBDOMAIN,
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
)


def validate_name(resource_type: ResourceType, name: str) -> None:
    max_length, pattern, detail = _NAME_RULES.get((resource_type.group, resource_type.kind), _SUBDOMAIN_RULE)
    if len(name) > max_length or not pattern.match(name):
        raise invalid(
            resource_type.kind, resource_type.group, name, "metadata.name", f'Invalid value: "{name}": {detail}'
        )


# Status fields Go serializes even when zero (no `omitempty`); the Python client's models reject them missing.
_ALWAYS_SERIALIZED_STATUS: dict[tuple[str, str], tuple[str, ...]] = {
    ("apps", "DaemonSet"): ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady"),
    ("apps", "ReplicaSet"): ("replicas",),
    ("apps", "StatefulSet"): ("replicas",),
    ("autoscaling", "HorizontalPodAutoscaler"): ("desiredReplicas",),
}


def complete_status(resource_type: ResourceType, status: Any) -> Any:
    fields = _ALWAYS_SERIALIZED_STATUS.get((resource_type.group, resource_type.kind), ())
    if fields and isinstance(status, dict):
        for field in fields:
            status.setdefault(field, 0)
    return status


def status_on_create(resource_type: ResourceType, obj: dict[str, Any]) -> dict[str, Any] | None:
    """What `.status` becomes on create for kinds with a status subresource (the client's status is dropped)."""
    if is_kind(resource_type, "", "Namespace"):
        return {"phase": "Active"}
    if is_kind(resource_type, "", "Service"):
        return {"loadBalancer": {}}
    if is_kind(resource_type, "", "Pod"):
        return {"phase": "Pending"}
    if is_kind(resource_type, "apiextensions.k8s.io", "CustomResourceDefinition"):
        return crd_status(obj)
    if resource_type.custom:
        return None
    status: dict[str, Any] = {}
    complete_status(resource_type, status)
    return status


def allocate_on_create(resource_type: ResourceType, obj: dict[str, Any], next_cluster_ip: Callable[[], str]) -> None:
    """What the registry allocates once: a Service's clusterIP."""
    spec = obj.get("spec")
    if is_kind(resource_type, "", "Service") and isinstance(spec, dict):
        if spec.get("type", "ClusterIP") != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = next_cluster_ip()
        if spec.get("clusterIP") and "clusterIPs" not in spec:
            spec["clusterIPs"] = [spec["clusterIP"]]


def defaults(resource_type: ResourceType, obj: dict[str, Any]) -> None:
    """Defaulting, which the real apiserver runs on every decoded write (create, update and patch results)."""
    spec = obj.get("spec")
    if is_kind(resource_type, "", "Namespace"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif is_kind(resource_type, "", "Service") and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif is_kind(resource_type, "", "Secret"):
        obj.setdefault("type", "Opaque")
    elif _defaults_replicas(resource_type) and isinstance(spec, dict) and spec.get("replicas") is None:
        spec["replicas"] = 1


def _defaults_replicas(resource_type: ResourceType) -> bool:
    return resource_type.group == "apps" and resource_type.kind in {"Deployment", "ReplicaSet", "StatefulSet"}


def keep_on_update(resource_type: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
    """Fields a PUT may omit without clearing them (the registry copies them from the stored object)."""
    if is_kind(resource_type, "", "Service"):
        new_spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        for field in ("clusterIP", "clusterIPs"):
            if not new_spec.get(field) and old_spec.get(field):
                new_spec[field] = copy.deepcopy(old_spec[field])
    if is_kind(resource_type, "", "Namespace"):
        new.setdefault("spec", copy.deepcopy(old.get("spec") or {}))


def normalize(resource_type: ResourceType, obj: dict[str, Any]) -> None:
    """Conversions every write goes through: Secret stringData is folded into base64 `data` (write-only field)."""
    if not is_kind(resource_type, "", "Secret"):
        return
    string_data = obj.pop("stringData", None) or {}
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise errors.bad_request(f"illegal base64 data in Secret key {key!r}") from None
    if string_data:
        data.update({key: base64.b64encode(str(value).encode()).decode() for key, value in string_data.items()})
        obj["data"] = data


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if (operator == "In" and labels.get(key) not in values) or (operator == "NotIn" and labels.get(key) in values):
            return False
        if (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return True


def _go_repr(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def validate(resource_type: ResourceType, new: dict[str, Any], old: dict[str, Any] | None) -> None:
    name = new.get("metadata", {}).get("name", "")
    spec = new.get("spec") or {}
    if resource_type.group == "apps" and resource_type.kind in _APPS_WORKLOADS:
        selector = spec.get("selector")
        if not selector:
            raise invalid(resource_type.kind, "apps", name, "spec.selector", "Required value", "FieldValueRequired")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not _selector_matches(selector, labels):
            raise invalid(
                resource_type.kind,
                "apps",
                name,
                "spec.template.metadata.labels",
                f"Invalid value: {_go_repr(labels)}: `selector` does not match template `labels`",
            )
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            raise invalid(
                resource_type.kind,
                "apps",
                name,
                "spec.selector",
                f"Invalid value: {_go_repr(selector)}: field is immutable",
            )
    if is_kind(resource_type, "", "Service") and old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and old_ip != "None" and spec.get("clusterIP") != old_ip:
            raise invalid(
                "Service", "", name, "spec.clusterIP", f'Invalid value: "{spec.get("clusterIP")}": field is immutable'
            )
    if resource_type.scale is not None and not resource_type.custom:
        replicas = spec.get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            raise invalid(
                resource_type.kind,
                resource_type.group,
                name,
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )


def spec_view(resource_type: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object whose changes bump metadata.generation."""
    ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if resource_type.has_status else set())
    return {key: value for key, value in obj.items() if key not in ignored}
