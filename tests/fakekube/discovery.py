"""Discovery documents: /version, /api, /apis, /apis/{group}, and the APIResourceList of each group version."""

from __future__ import annotations

import re
from typing import Any

from .kinds import DEFAULT_VERBS, ResourceType
from .registry import Registry

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-fakekube",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first (sort ascending)."""
    match = _VERSION.match(version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0))


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    ordered = sorted(versions, key=version_priority)
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in ordered]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [api_group(group, versions) for group, versions in registry.group_versions().items() if group]
    for group in groups:
        del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _resource_entries(resource_type: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": resource_type.plural,
        "singularName": resource_type.singular_name,
        "namespaced": resource_type.namespaced,
        "kind": resource_type.kind,
        "verbs": list(DEFAULT_VERBS),
    }
    if resource_type.short_names:
        main["shortNames"] = list(resource_type.short_names)
    if resource_type.categories:
        main["categories"] = list(resource_type.categories)
    entries = [main]
    subresource_verbs = ["get", "patch", "update"]
    if resource_type.has_status:
        entries.append(
            {
                "name": f"{resource_type.plural}/status",
                "singularName": "",
                "namespaced": resource_type.namespaced,
                "kind": resource_type.kind,
                "verbs": subresource_verbs,
            }
        )
    if resource_type.scale is not None:
        entries.append(
            {
                "name": f"{resource_type.plural}/scale",
                "singularName": "",
                "namespaced": resource_type.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": subresource_verbs,
            }
        )
    return entries


def resource_list(group: str, version: str, types: list[ResourceType]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [entry for resource_type in types for entry in _resource_entries(resource_type)],
    }
