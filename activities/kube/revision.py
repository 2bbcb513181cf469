"""Revision identity of a Kubernetes workload: what has to change for a new release to start.

A revision is a hash of the target's pod template *as the API server returns it* (plain JSON, never the
client's model classes) plus the checksums of the ConfigMaps/Secrets the pods use. Flagger hashes its Go
structs, so every library upgrade that adds a field moved the hash of every canary and started releases of
unchanged workloads (fluxcd/flagger#1673, #1799). Hashing the canonical JSON, with empty values dropped, keeps
the revision stable across client and server upgrades that add optional fields.

Not part of the revision: replicas and anything else outside `spec.template`, Flagger's DaemonSet
scale-to-zero node selector, and the `flagger-id` pod annotation put on primaries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from activities.kube import configs as config_tracking
from activities.kube import rest
from activities.kube.labels import POD_ID_ANNOTATION, SCALE_TO_ZERO_NODE_SELECTOR
from canaryflow.spec import Canary

_HASH_LENGTH = 16
_IGNORED_POD_ANNOTATIONS = frozenset({POD_ID_ANNOTATION})


def _canonical(value: Any) -> Any:
    """`value` without null, empty strings, empty lists and empty maps (the API treats them as unset)."""
    if isinstance(value, Mapping):
        cleaned = {key: _canonical(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if item not in (None, "", [], {})}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def pod_template_revision(pod_template: Mapping[str, Any]) -> str:
    """Canonical hash of a pod template (`spec.template` of a Deployment or DaemonSet, raw JSON)."""
    template: dict[str, Any] = json.loads(json.dumps(pod_template))
    metadata = template.get("metadata") or {}
    metadata.pop("creationTimestamp", None)
    annotations = metadata.get("annotations") or {}
    for key in _IGNORED_POD_ANNOTATIONS:
        annotations.pop(key, None)
    node_selector = (template.get("spec") or {}).get("nodeSelector") or {}
    for key, value in SCALE_TO_ZERO_NODE_SELECTOR.items():
        if node_selector.get(key) == value:
            del node_selector[key]
    return _digest(_canonical(template))


def config_revision(configs: Mapping[str, str]) -> str:
    """Hash of tracked configs (`{"configmap/<name>": checksum, "secret/<name>": checksum}`)."""
    return _digest(dict(configs))


def template_and_configs_revision(pod_template: Mapping[str, Any], configs: Mapping[str, str]) -> str:
    """The revision of a pod template together with the configs it uses (see `workload_revision`)."""
    template_revision = pod_template_revision(pod_template)
    if not configs:
        return template_revision
    return _digest(f"{template_revision}:{config_revision(configs)}")


def _read_target(api_client: ApiClient, canary: Canary) -> rest.JsonObject:
    target_ref = canary.spec.target_ref
    resource = rest.DAEMONSETS if target_ref.kind == "DaemonSet" else rest.DEPLOYMENTS
    return rest.read(api_client, resource, canary.metadata.namespace, target_ref.name)


def tracked_configs(api_client: ApiClient, canary: Canary) -> dict[str, str]:
    """Flagger's `status.trackedConfigs` of the target: `{"configmap/<name>": checksum, "secret/<name>": ...}`.

    Blocking (run it through `run_blocking`). Raises ApiException for a missing target or a missing
    mandatory config.
    """
    target = _read_target(api_client, canary)
    refs = config_tracking.target_configs(api_client, canary.metadata.namespace, target["spec"]["template"])
    return config_tracking.as_tracked(refs)


def workload_revision(api_client: ApiClient, canary: Canary) -> str:
    """Revision of the target: its pod template plus its tracked configs. Blocking; replicas do not count."""
    return pod_template_and_configs_revision(
        api_client, canary.metadata.namespace, _read_target(api_client, canary)["spec"]["template"]
    )


def pod_template_and_configs_revision(api_client: ApiClient, namespace: str, template: Mapping[str, Any]) -> str:
    """Revision of a pod template (as it is, or about to be written) with the configs it tracks. Blocking."""
    refs = config_tracking.target_configs(api_client, namespace, template)
    return template_and_configs_revision(template, config_tracking.as_tracked(refs))
