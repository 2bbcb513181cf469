"""Config tracking (Flagger's config_tracker.go): the ConfigMaps and Secrets a pod template uses.

Tracked configs are those referenced by volumes (configMap, secret, projected sources) and by the env/envFrom
of containers and init containers. A config annotated `flagger.app/config-tracking: disabled` is not tracked
and the primary keeps using the original. Secrets are tracked only for the types Opaque, basic-auth, ssh-auth
and TLS (registry credentials belong to service accounts). A missing optional config is skipped; a missing
mandatory one is an error.

The primary gets `<name>-primary` copies, so a config change reaches the primary only through promotion.
Checksums are Flagger's (sha256 of the JSON of `data`, first 8 bytes in hex), so `status.trackedConfigs`
written by Flagger and by canaryflow agree.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from activities.kube import rest
from activities.kube.labels import include_by_prefix
from activities.kube.names import primary_name

ConfigType = Literal["configmap", "secret"]
CONFIG_TRACKING_ANNOTATION = "flagger.app/config-tracking"
TRACKED_SECRET_TYPES = frozenset({"Opaque", "kubernetes.io/basic-auth", "kubernetes.io/ssh-auth", "kubernetes.io/tls"})
_GO_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


@dataclass(frozen=True)
class ConfigRef:
    type: ConfigType
    name: str
    checksum: str

    @property
    def key(self) -> str:
        return f"{self.type}/{self.name}"


def checksum(data: Any) -> str:
    """Flagger's checksum: sha256 of Go's `json.Marshal(data)`, first 8 bytes as hex."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _config_checksum(config: Mapping[str, Any]) -> str:
    data = config.get("data") or None
    binary = config.get("binaryData")
    # Flagger only hashes `data`; binaryData joins the hash only when present so plain configs match Flagger.
    return checksum({"data": data, "binaryData": binary} if binary else data)


def tracking_disabled(config: Mapping[str, Any]) -> bool:
    annotations = config.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(CONFIG_TRACKING_ANNOTATION, "")).startswith("disable")


def _mandatory(reference: Mapping[str, Any]) -> bool:
    return not reference.get("optional", False)


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("containers") or []
    yield from pod_spec.get("initContainers") or []


def _config_references(pod_spec: Mapping[str, Any]) -> Iterator[tuple[ConfigType, dict[str, Any], str]]:
    """Every reference to a config in a pod spec: (its type, the reference object, the field holding the name)."""
    for volume in pod_spec.get("volumes") or []:
        if config_map := volume.get("configMap"):
            yield "configmap", config_map, "name"
        if secret := volume.get("secret"):
            yield "secret", secret, "secretName"
        for source in (volume.get("projected") or {}).get("sources") or []:
            if config_map := source.get("configMap"):
                yield "configmap", config_map, "name"
            if secret := source.get("secret"):
                yield "secret", secret, "name"
    for container in _containers(pod_spec):
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if ref := value_from.get("configMapKeyRef"):
                yield "configmap", ref, "name"
            elif ref := value_from.get("secretKeyRef"):
                yield "secret", ref, "name"
        for env_from in container.get("envFrom") or []:
            if ref := env_from.get("configMapRef"):
                yield "configmap", ref, "name"
            elif ref := env_from.get("secretRef"):
                yield "secret", ref, "name"


def referenced_configs(pod_spec: Mapping[str, Any]) -> dict[tuple[ConfigType, str], bool]:
    """Every (type, name) the pod spec references, mapped to whether it is mandatory."""
    return {
        (config_type, reference[field]): _mandatory(reference)
        for config_type, reference, field in _config_references(pod_spec)
    }


def _resource(config_type: ConfigType) -> rest.Resource:
    return rest.CONFIGMAPS if config_type == "configmap" else rest.SECRETS


def _tracked_ref(config_type: ConfigType, name: str, config: Mapping[str, Any]) -> ConfigRef | None:
    if tracking_disabled(config):
        return None
    # The API server defaults a Secret's type to Opaque.
    if config_type == "secret" and config.get("type", "Opaque") not in TRACKED_SECRET_TYPES:
        return None
    return ConfigRef(config_type, name, _config_checksum(config))


def target_configs(api: ApiClient, namespace: str, pod_template: Mapping[str, Any]) -> dict[str, ConfigRef]:
    """The tracked configs of a pod template, keyed `configmap/<name>` / `secret/<name>`. Blocking."""
    refs: dict[str, ConfigRef] = {}
    for (config_type, name), mandatory in sorted(referenced_configs(pod_template.get("spec") or {}).items()):
        try:
            config = rest.read(api, _resource(config_type), namespace, name)
        except ApiException as error:
            if error.status == 404 and not mandatory:
                continue
            raise
        if (ref := _tracked_ref(config_type, name, config)) is not None:
            refs[ref.key] = ref
    return refs


def as_tracked(refs: Mapping[str, ConfigRef]) -> dict[str, str]:
    """Flagger's `status.trackedConfigs` shape."""
    return {key: ref.checksum for key, ref in sorted(refs.items())}


def apply_primary_configs(pod_spec: Mapping[str, Any], tracked: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `pod_spec` whose references to tracked configs point at their `-primary` copies."""
    spec: dict[str, Any] = copy.deepcopy(dict(pod_spec))
    for config_type, reference, field in _config_references(spec):
        name = reference.get(field)
        if name is not None and f"{config_type}/{name}" in tracked:
            reference[field] = primary_name(name)
    return spec


def _owner_references(
    existing: Sequence[Mapping[str, Any]], owner: Mapping[str, Any] | None, canary_name: str
) -> list[dict[str, Any]]:
    """The Canary as controller, plus every other owner the copy already had, demoted to non-controller."""
    result: list[dict[str, Any]] = [dict(owner)] if owner is not None else []
    for reference in existing:
        if reference.get("kind") == "Canary" and reference.get("name") == canary_name:
            continue
        result.append({**reference, "controller": False})
    return result


def sync_primary_configs(
    api: ApiClient,
    namespace: str,
    refs: Mapping[str, ConfigRef],
    *,
    owner: Mapping[str, Any] | None,
    canary_name: str,
    include_label_prefixes: Sequence[str],
) -> None:
    """Create or update the `-primary` copy of every tracked config. Blocking, idempotent, conflict-safe."""
    for ref in refs.values():
        resource = _resource(ref.type)
        source = rest.read(api, resource, namespace, ref.name)

        def build(current: rest.JsonObject | None, source: rest.JsonObject = source) -> rest.JsonObject | None:
            existing_owners = (current or {}).get("metadata", {}).get("ownerReferences") or []
            metadata: dict[str, Any] = {
                "labels": include_by_prefix(source["metadata"].get("labels"), include_label_prefixes),
                "ownerReferences": _owner_references(existing_owners, owner, canary_name),
            }
            desired: dict[str, Any] = {"metadata": metadata}
            for field in ("data", "binaryData", "type"):
                if field in source:
                    desired[field] = source[field]
            if current is not None:
                wanted = {key: desired.get(key) for key in ("data", "binaryData", "type")}
                have = {key: current.get(key) for key in ("data", "binaryData", "type")}
                current_meta = current.get("metadata", {})
                if (
                    wanted == have
                    and (current_meta.get("labels") or {}) == metadata["labels"]
                    and (current_meta.get("ownerReferences") or []) == metadata["ownerReferences"]
                ):
                    return None
                # Keep what other tools put on the copy (annotations); replace what Flagger owns.
                merged_meta = {
                    **{k: v for k, v in current_meta.items() if k not in ("labels", "ownerReferences")},
                    **_non_empty(metadata),
                }
                return {
                    **{k: v for k, v in current.items() if k not in ("data", "binaryData")},
                    **desired,
                    "metadata": merged_meta,
                }
            desired["metadata"] = _non_empty(metadata)
            return desired

        rest.upsert(api, resource, namespace, primary_name(ref.name), build)


def _non_empty(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value}
