"""Strategic merge patch (the default patch type of the typed `kubernetes` client), plus RFC 7386 merge patch.

Which lists merge by key comes from the built-in types' OpenAPI `x-kubernetes-patch-merge-key` /
`x-kubernetes-patch-strategy`; every other list is atomic (replaced whole), like `args`, `tolerations`, HPA
`metrics` or Ingress `rules`.
"""

from __future__ import annotations

import copy
from typing import Any

_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}
_DIRECTIVE_PREFIXES = ("$setElementOrder/", "$deleteFromPrimitiveList/")


class _Delete:
    """Marker: a `$patch: delete` map removes the field holding it."""


_DELETE = _Delete()


def _list_strategy(path: tuple[str, ...]) -> tuple[str, str]:
    """("merge", key), ("primitive", "") for merged primitive lists, or ("atomic", "")."""
    field = path[-1] if path else ""
    parent = path[-2] if len(path) > 1 else ""
    if field == "finalizers" and parent == "metadata":
        return "primitive", ""
    if field == "ownerReferences" and parent == "metadata":
        return "merge", "uid"
    if field == "ports":
        if parent in _CONTAINER_LISTS:
            return "merge", "containerPort"
        if path == ("spec", "ports"):
            return "merge", "port"
        return "atomic", ""
    if field in _MERGE_KEYS:
        return "merge", _MERGE_KEYS[field]
    return "atomic", ""


def _is_directive(key: str) -> bool:
    return key in ("$patch", "$retainKeys") or key.startswith(_DIRECTIVE_PREFIXES)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [_strip(item) for item in value if not (isinstance(item, dict) and item.get("$patch") == "replace")]
    return value


def _merge_map(original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | _Delete:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return {k: _strip(v) for k, v in patch.items() if not _is_directive(k) and v is not None}
    result = dict(original)
    for key, value in patch.items():
        if _is_directive(key):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value, (*path, key))
            if isinstance(merged, _Delete):
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(current if isinstance(current, list) else [], value, (*path, key))
        else:
            result[key] = value
    _apply_list_directives(result, patch, path)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {key: value for key, value in result.items() if key in retain}
    return result


def _apply_list_directives(result: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> None:
    """`$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`, once the fields themselves are merged."""
    for key, value in patch.items():
        directive, _, field = key.partition("/")
        if not isinstance(value, list) or not isinstance(result.get(field), list):
            continue
        if directive == "$deleteFromPrimitiveList":
            result[field] = [item for item in result[field] if item not in value]
        elif directive == "$setElementOrder":
            result[field] = _reorder(result[field], value, _list_strategy((*path, field)))


def _reorder(items: list[Any], order: list[Any], strategy: tuple[str, str]) -> list[Any]:
    kind, merge_key = strategy

    def identity(item: Any) -> Any:
        return item.get(merge_key) if kind == "merge" and isinstance(item, dict) else item

    wanted = [entry.get(merge_key) for entry in order if isinstance(entry, dict)] if kind == "merge" else list(order)
    ranked = [item for key in wanted for item in items if identity(item) == key]
    return ranked + [item for item in items if identity(item) not in wanted]


def _merge_list(original: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    kind, merge_key = _list_strategy(path)
    if kind == "atomic":
        return [_strip(item) for item in patch]
    if kind == "primitive":
        return [*original, *(item for item in patch if item not in original)]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip(item) for item in patch if not (isinstance(item, dict) and item.get("$patch") == "replace")]
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict):
            result.append(item)
            continue
        key_value = item.get(merge_key)
        index = next((i for i, r in enumerate(result) if isinstance(r, dict) and r.get(merge_key) == key_value), None)
        if item.get("$patch") == "delete":
            result = [r for r in result if not (isinstance(r, dict) and r.get(merge_key) == key_value)]
            continue
        merged = _merge_map(result[index] if index is not None else {}, item, path)
        if isinstance(merged, _Delete):
            continue
        if index is None:
            result.append(merged)
        else:
            result[index] = merged
    return result


def strategic_merge(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = _merge_map(copy.deepcopy(original), patch, ())
    return {} if isinstance(merged, _Delete) else merged


def json_merge(original: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge(result.get(key), value)
    return result
