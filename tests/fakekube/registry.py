"""The resource types the server routes and lists in discovery: the built-ins plus those CRDs register."""

from __future__ import annotations

from .kinds import BUILTIN_TYPES, ResourceType


class Registry:
    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        self.reset()

    def reset(self) -> None:
        self._types = {(t.group, t.version, t.plural): t for t in BUILTIN_TYPES}
        self._by_crd = {}

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return next((t for t in self._types.values() if (t.group, t.version, t.kind) == (group, version, kind)), None)

    def all_types(self) -> list[ResourceType]:
        return list(self._types.values())

    def register_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        self.unregister_crd(crd_name)
        for resource_type in types:
            self._types[(resource_type.group, resource_type.version, resource_type.plural)] = resource_type
        self._by_crd[crd_name] = types

    def unregister_crd(self, crd_name: str) -> None:
        for resource_type in self._by_crd.pop(crd_name, []):
            self._types.pop((resource_type.group, resource_type.version, resource_type.plural), None)

    def group_versions(self) -> dict[str, list[str]]:
        """group → served versions, the first being the preferred one (order of registration)."""
        result: dict[str, list[str]] = {}
        for resource_type in self._types.values():
            versions = result.setdefault(resource_type.group, [])
            if resource_type.version not in versions:
                versions.append(resource_type.version)
        return result

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types.values() if (t.group, t.version) == (group, version)]
