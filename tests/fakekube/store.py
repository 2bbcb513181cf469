"""The objects, the global resourceVersion, the bounded event log, and create/update/delete with registry rules.

Everything runs under one re-entrant lock: the aiohttp handlers (server thread), direct test calls (`FakeKube.seed`,
`get`) and write hooks (the simulated controllers, which write back synchronously from inside a write).
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from . import errors, strategies
from .crds import types_from_crd
from .kinds import SCALE_TYPE, ResourceType
from .patching import apply_patch
from .registry import Registry
from .selectors import selector_to_string

Obj = dict[str, Any]
Key = tuple[str, str, str, str]  # storage group, storage plural, namespace ("" if cluster-scoped), name
Operation = Literal["create", "update", "status", "scale", "delete"]
WriteHook = Callable[[ResourceType, Operation, Obj | None, Obj], None]  # (type, operation, old, new)
_SUBRESOURCE_OPERATIONS: dict[str, Operation] = {"status": "status", "scale": "scale"}
_SERVER_OWNED_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
# The characters Kubernetes uses in generated names (no vowels, no look-alikes).
SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Event:
    resource_version: int
    type: str  # ADDED | MODIFIED | DELETED
    storage_key: tuple[str, str]
    namespace: str
    obj: Obj
    old: Obj | None


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def present(resource_type: ResourceType, obj: Obj) -> Obj:
    """A copy served through `resource_type` (multi-version CRDs share storage; only apiVersion differs)."""
    served = copy.deepcopy(obj)
    served["apiVersion"] = resource_type.api_version
    served["kind"] = resource_type.kind
    return served


def _path_get(obj: Obj, path: str) -> Any:
    current: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def _path_set(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    current = obj
    for part in parts[:-1]:
        current = current.setdefault(part, {})
    current[parts[-1]] = value


def _check_type_of_body(resource_type: ResourceType | None, body: Obj) -> None:
    """Real: a body of another apiVersion or kind than the URL's is a 400 (missing ones default to the URL's)."""
    if resource_type is None:
        return
    if body.get("apiVersion") and body["apiVersion"] != resource_type.api_version:
        raise errors.bad_request(
            f"the API version in the data ({body['apiVersion']}) does not match the expected API version "
            f"({resource_type.api_version})"
        )
    if body.get("kind") and body["kind"] != resource_type.kind:
        raise errors.bad_request(
            f"the kind in the data ({body['kind']}) does not match the expected kind ({resource_type.kind})"
        )


def _name_for_create(resource_type: ResourceType, meta: Obj) -> str:
    """metadata.name, or generateName plus a random suffix; 422 when neither is given."""
    if meta.get("name"):
        return str(meta["name"])
    if not meta.get("generateName"):
        raise errors.invalid(
            resource_type.kind,
            resource_type.group,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
            "FieldValueRequired",
        )
    return f"{meta['generateName']}{''.join(random.choices(SAFE_ALPHANUMS, k=5))}"


def _split_status_write(resource_type: ResourceType, current: Obj, candidate: Obj, subresource: str | None) -> Obj:
    """A /status write changes only `.status`; a write to the main resource of a kind with /status keeps it."""
    if subresource == "status":
        new, source = copy.deepcopy(current), candidate
    elif resource_type.has_status:
        new, source = candidate, current
    else:
        return candidate
    if "status" not in source:
        new.pop("status", None)
    elif subresource == "status":
        new["status"] = strategies.complete_status(resource_type, source["status"])
    else:
        new["status"] = copy.deepcopy(source["status"])
    return new


def _propagation_policy(options: Obj) -> str:
    """DeleteOptions.propagationPolicy, or the deprecated orphanDependents=true; Background by default."""
    return str(options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "Background"))


class Store:
    def __init__(self, compact_after_events: int = 1000) -> None:
        self.lock = threading.RLock()
        self.registry = Registry()
        self.objects: dict[Key, Obj] = {}
        self.events: deque[Event] = deque(maxlen=compact_after_events)
        self.listeners: set[Callable[[Event], None]] = set()
        self.hooks: list[WriteHook] = []
        self.resource_version = 0
        self._next_ip = 1
        self._deferred_policies: dict[str, str] = {}  # uid → propagationPolicy of a DELETE held by finalizers

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget objects, CRDs and hooks. The resourceVersion keeps counting up, as a real one never goes back."""
        with self.lock:
            self.objects.clear()
            self.events.clear()
            self.registry.reset()
            self.hooks.clear()
            self._next_ip = 1
            self._deferred_policies.clear()

    def oldest_replayable(self) -> int:
        """The smallest resourceVersion a watch may start from and still get every later event."""
        with self.lock:
            return self.events[0].resource_version - 1 if self.events else self.resource_version

    @staticmethod
    def key(resource_type: ResourceType, namespace: str | None, name: str) -> Key:
        group, plural = resource_type.storage_key
        return group, plural, (namespace or "") if resource_type.namespaced else "", name

    def type_for(self, storage_key: tuple[str, str]) -> ResourceType | None:
        return next((t for t in self.registry.all_types() if t.storage_key == storage_key), None)

    def _allocate_cluster_ip(self) -> str:
        ip = f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
        self._next_ip += 1
        return ip

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        for listener in list(self.listeners):
            listener(event)

    def _commit(
        self,
        resource_type: ResourceType,
        key: Key,
        new: Obj,
        old: Obj | None,
        operation: Operation,
        run_hooks: bool = True,
    ) -> Obj:
        """Store `new` with a fresh resourceVersion, log and broadcast the event, then run the write hooks."""
        self.resource_version += 1
        new["metadata"]["resourceVersion"] = str(self.resource_version)
        self.objects[key] = new
        event_type = "ADDED" if old is None else "MODIFIED"
        self._emit(Event(self.resource_version, event_type, key[:2], key[2], copy.deepcopy(new), old))
        if strategies.is_kind(resource_type, "apiextensions.k8s.io", "CustomResourceDefinition"):
            self.registry.register_crd(new["metadata"]["name"], types_from_crd(new))
        result = present(resource_type, new)
        for hook in list(self.hooks) if run_hooks else []:
            hook(resource_type, operation, copy.deepcopy(old) if old else None, copy.deepcopy(new))
        return result

    def _current(self, resource_type: ResourceType, namespace: str | None, name: str) -> tuple[Key, Obj]:
        key = self.key(resource_type, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise errors.not_found(resource_type.plural, resource_type.group, name)
        return key, obj

    # -- reads -------------------------------------------------------------------------------------------------

    def get(self, resource_type: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            return present(resource_type, self._current(resource_type, namespace, name)[1])

    def list(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool] = lambda obj: True,
    ) -> tuple[list[Obj], str]:
        with self.lock:
            group, plural = resource_type.storage_key
            items = [
                present(resource_type, obj)
                for key, obj in sorted(self.objects.items())
                if key[:2] == (group, plural) and (not namespace or key[2] == namespace)
            ]
            return [item for item in items if matches(item)], str(self.resource_version)

    # -- create ------------------------------------------------------------------------------------------------

    def create(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        body: Obj,
        *,
        keep_status: bool = False,
        run_hooks: bool = True,
    ) -> Obj:
        with self.lock:
            obj = copy.deepcopy(body)
            _check_type_of_body(resource_type, obj)
            obj["apiVersion"], obj["kind"] = resource_type.api_version, resource_type.kind
            meta = obj.setdefault("metadata", {})
            if resource_type.namespaced:
                if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                namespace = namespace or meta.get("namespace") or "default"
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if meta.get("resourceVersion"):
                raise errors.internal("resourceVersion should not be set on objects to be created")
            name = meta["name"] = _name_for_create(resource_type, meta)
            strategies.validate_name(resource_type, name)
            if resource_type.namespaced:
                self._require_namespace(resource_type, namespace or "", name)
            key = self.key(resource_type, namespace, name)
            if key in self.objects:
                raise errors.already_exists(resource_type.plural, resource_type.group, name)
            for field in (*_SERVER_OWNED_METADATA, "selfLink", "managedFields"):
                meta.pop(field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if resource_type.tracks_generation:
                meta["generation"] = 1
            if resource_type.has_status and not keep_status:
                status = strategies.status_on_create(resource_type, obj)
                if status is None:
                    obj.pop("status", None)
                else:
                    obj["status"] = status
            strategies.allocate_on_create(resource_type, obj, self._allocate_cluster_ip)
            strategies.defaults(resource_type, obj)
            strategies.normalize(resource_type, obj)
            strategies.validate(resource_type, obj, None)
            if strategies.is_kind(resource_type, "apiextensions.k8s.io", "CustomResourceDefinition"):
                types_from_crd(obj)  # rejects a malformed CRD before it is stored
            return self._commit(resource_type, key, obj, None, "create", run_hooks)

    def _require_namespace(self, resource_type: ResourceType, namespace: str, name: str) -> None:
        namespace_obj = self.objects.get(("", "namespaces", "", namespace))
        if namespace_obj is None:
            raise errors.not_found("namespaces", "", namespace)
        if namespace_obj["metadata"].get("deletionTimestamp"):
            message = (
                f'{errors.qualified(resource_type.plural, resource_type.group)} "{name}" is forbidden: unable to '
                f"create new content in namespace {namespace} because it is being terminated"
            )
            raise errors.ApiError(403, "Forbidden", message, {"name": name, "kind": resource_type.plural})

    # -- update ------------------------------------------------------------------------------------------------

    def replace(
        self, resource_type: ResourceType, namespace: str | None, name: str, body: Obj, subresource: str | None = None
    ) -> Obj:
        with self.lock:
            key, current = self._current(resource_type, namespace, name)
            _check_type_of_body(resource_type if subresource is None else None, body)
            meta = body.get("metadata") or {}
            if meta.get("name") and meta["name"] != name:
                raise errors.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
                )
            if resource_type.namespaced and meta.get("namespace") and meta["namespace"] != key[2]:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            requested = meta.get("resourceVersion")
            if not requested:
                if resource_type.custom:
                    raise errors.invalid(
                        resource_type.kind,
                        resource_type.group,
                        name,
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
            elif requested != current["metadata"]["resourceVersion"]:
                raise errors.conflict(resource_type.plural, resource_type.group, name)
            return self._apply_update(resource_type, key, current, copy.deepcopy(body), subresource)

    def patch(
        self,
        resource_type: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch_body: Any,
        subresource: str | None = None,
    ) -> Obj:
        with self.lock:
            key, current = self._current(resource_type, namespace, name)
            patched = apply_patch(resource_type, content_type, present(resource_type, current), patch_body)
            self._check_patched_identity(resource_type, current, patched)
            return self._apply_update(resource_type, key, current, patched, subresource)

    @staticmethod
    def _check_patched_identity(resource_type: ResourceType, current: Obj, patched: Obj) -> None:
        """A resourceVersion in a patch is a precondition; name and namespace may not change."""
        meta, current_meta = patched.get("metadata") or {}, current["metadata"]
        name = current_meta["name"]
        requested = meta.get("resourceVersion")
        if requested and requested != current_meta["resourceVersion"]:
            raise errors.conflict(resource_type.plural, resource_type.group, name)
        for field in ("name", "namespace"):
            if meta.get(field) not in (None, current_meta.get(field)):
                raise errors.invalid(
                    resource_type.kind,
                    resource_type.group,
                    name,
                    f"metadata.{field}",
                    f'Invalid value: "{meta.get(field)}": field is immutable',
                )

    def _apply_update(
        self, resource_type: ResourceType, key: Key, current: Obj, candidate: Obj, subresource: str | None
    ) -> Obj:
        new = _split_status_write(resource_type, current, candidate, subresource)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
        for field in (*_SERVER_OWNED_METADATA, "name", "namespace", "resourceVersion"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        name = old_meta["name"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    resource_type.kind,
                    resource_type.group,
                    name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                    "FieldValueForbidden",
                )
        strategies.keep_on_update(resource_type, new, current)
        strategies.defaults(resource_type, new)
        strategies.normalize(resource_type, new)
        strategies.validate(resource_type, new, current)
        if strategies.is_kind(resource_type, "apiextensions.k8s.io", "CustomResourceDefinition"):
            types_from_crd(new)
        if resource_type.tracks_generation and strategies.spec_view(resource_type, new) != strategies.spec_view(
            resource_type, current
        ):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if new == current:
            return present(resource_type, current)  # a no-op write: no new resourceVersion, no watch event
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            policy = self._deferred_policies.pop(meta["uid"], "Background")
            return present(resource_type, self._remove(key, new, policy))
        operation = _SUBRESOURCE_OPERATIONS.get(subresource or "", "update")
        return self._commit(resource_type, key, new, copy.deepcopy(current), operation)

    def write_status(self, resource_type: ResourceType, namespace: str | None, name: str, status: Obj) -> Obj:
        """What a controller's UpdateStatus does (no resourceVersion precondition)."""
        with self.lock:
            key, current = self._current(resource_type, namespace, name)
            return self._apply_update(resource_type, key, current, {"status": copy.deepcopy(status)}, "status")

    # -- scale -------------------------------------------------------------------------------------------------

    def _scale_of(self, resource_type: ResourceType, obj: Obj) -> Obj:
        assert resource_type.scale is not None
        scale = resource_type.scale
        if scale.label_selector_path is None:
            selector = selector_to_string((obj.get("spec") or {}).get("selector"))
        else:
            selector = (_path_get(obj, scale.label_selector_path) or "") if scale.label_selector_path else ""
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: meta[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in meta
            },
            "spec": {"replicas": _path_get(obj, scale.spec_replicas_path) or 0},
            "status": {"replicas": _path_get(obj, scale.status_replicas_path) or 0, "selector": selector},
        }

    def get_scale(self, resource_type: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.lock:
            return self._scale_of(resource_type, self._current(resource_type, namespace, name)[1])

    def replace_scale(self, resource_type: ResourceType, namespace: str | None, name: str, scale: Obj) -> Obj:
        with self.lock:
            key, current = self._current(resource_type, namespace, name)
            requested = (scale.get("metadata") or {}).get("resourceVersion")
            if requested and requested != current["metadata"]["resourceVersion"]:
                raise errors.conflict(resource_type.plural, resource_type.group, name)
            replicas = (scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    "spec.replicas",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            assert resource_type.scale is not None
            candidate = copy.deepcopy(current)
            _path_set(candidate, resource_type.scale.spec_replicas_path, replicas)
            self._apply_update(resource_type, key, current, candidate, "scale")
            return self._scale_of(resource_type, self.objects[key])

    def patch_scale(
        self, resource_type: ResourceType, namespace: str | None, name: str, content_type: str, patch_body: Any
    ) -> Obj:
        with self.lock:
            current_scale = self.get_scale(resource_type, namespace, name)
            patched = apply_patch(SCALE_TYPE, content_type, current_scale, patch_body)
            return self.replace_scale(resource_type, namespace, name, patched)

    # -- delete ------------------------------------------------------------------------------------------------

    def delete(
        self, resource_type: ResourceType, namespace: str | None, name: str, options: Obj | None = None
    ) -> tuple[int, Obj]:
        """(HTTP status, body) of a DELETE: the object or a Status, per the kind's registry."""
        options = options or {}
        with self.lock:
            key, current = self._current(resource_type, namespace, name)
            meta = current["metadata"]
            preconditions = options.get("preconditions") or {}
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field)
                if wanted and wanted != meta.get(field):
                    why = (
                        f"Precondition failed: {label} in precondition: {wanted}, "
                        f"{label} in object meta: {meta.get(field)}"
                    )
                    raise errors.conflict(resource_type.plural, resource_type.group, name, why)
            policy = _propagation_policy(options)
            if strategies.is_kind(resource_type, "", "Namespace"):
                return 200, present(resource_type, self._delete_namespace(key, current))
            removed, final = self._delete_key(key, policy)
            if not removed:
                code = 202 if options.get("orphanDependents") is False else 200
                return code, present(resource_type, final)
            if resource_type.returns_deleted_object:
                return 200, present(resource_type, final)
            details = {**errors.details_of(name, resource_type.group, resource_type.plural), "uid": meta["uid"]}
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _delete_key(self, key: Key, policy: str) -> tuple[bool, Obj]:
        """(removed now?, object): finalizers only mark the object with a deletionTimestamp."""
        current = self.objects[key]
        if not current["metadata"].get("finalizers"):
            return True, self._remove(key, current, policy)
        self._deferred_policies[current["metadata"]["uid"]] = policy
        if current["metadata"].get("deletionTimestamp"):
            return False, copy.deepcopy(current)
        marked = copy.deepcopy(current)
        marked["metadata"]["deletionTimestamp"] = now()
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        resource_type = self.type_for(key[:2])
        assert resource_type is not None
        self._commit(resource_type, key, marked, copy.deepcopy(current), "delete")
        return False, copy.deepcopy(self.objects[key])

    def _remove(self, key: Key, obj: Obj, policy: str) -> Obj:
        """Drop the object (DELETED event), then what depends on it: CRs of a CRD, ownerReference dependents."""
        self.objects.pop(key, None)
        self.resource_version += 1
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self.resource_version)
        self._emit(Event(self.resource_version, "DELETED", key[:2], key[2], copy.deepcopy(final), None))
        if key[:2] == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            storage = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            for dependent in [k for k in self.objects if k[:2] == storage]:
                self._remove(dependent, self.objects[dependent], "Background")
            self.registry.unregister_crd(key[3])
        self._collect_dependents(obj["metadata"]["uid"], policy)
        if key[2]:
            self._finish_namespace_if_empty(key[2])
        return final

    def _collect_dependents(self, owner_uid: str, policy: str) -> None:
        """The garbage collector: dependents lose the reference (Orphan, other live owners) or are deleted."""
        live_uids = {obj["metadata"]["uid"] for obj in self.objects.values()}
        for key, obj in list(self.objects.items()):
            if key not in self.objects:
                continue
            references = obj["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in references):
                continue
            remaining = [ref for ref in references if ref.get("uid") != owner_uid]
            if policy != "Orphan":
                remaining = [ref for ref in remaining if ref.get("uid") in live_uids]
                if not remaining:
                    self._delete_key(key, "Background")
                    continue
            resource_type = self.type_for(key[:2])
            if resource_type is None:
                continue
            updated = copy.deepcopy(obj)
            if remaining:
                updated["metadata"]["ownerReferences"] = remaining
            else:
                updated["metadata"].pop("ownerReferences", None)
            self._commit(resource_type, key, updated, copy.deepcopy(obj), "update")

    def _delete_namespace(self, key: Key, current: Obj) -> Obj:
        namespace = key[3]
        terminating = copy.deepcopy(current)
        terminating["metadata"].setdefault("deletionTimestamp", now())
        terminating["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        terminating.setdefault("status", {})["phase"] = "Terminating"
        namespace_type = self.type_for(("", "namespaces"))
        assert namespace_type is not None
        if terminating != current:
            self._commit(namespace_type, key, terminating, copy.deepcopy(current), "delete")
        response = copy.deepcopy(self.objects[key])
        for content_key in [k for k in self.objects if k[2] == namespace]:
            if content_key in self.objects:
                self._delete_key(content_key, "Background")
        self._finish_namespace_if_empty(namespace)
        return response

    def _finish_namespace_if_empty(self, namespace: str) -> None:
        namespace_key = ("", "namespaces", "", namespace)
        namespace_obj = self.objects.get(namespace_key)
        if namespace_obj is None or not namespace_obj["metadata"].get("deletionTimestamp"):
            return
        if not any(k[2] == namespace for k in self.objects):
            self._remove(namespace_key, namespace_obj, "Background")

    def delete_collection(
        self, resource_type: ResourceType, namespace: str | None, matches: Callable[[Obj], bool], options: Obj
    ) -> Obj:
        with self.lock:
            items, _ = self.list(resource_type, namespace, matches)
            policy = _propagation_policy(options)
            deleted = []
            for item in items:
                meta = item["metadata"]
                key = self.key(resource_type, meta.get("namespace"), meta["name"])
                if key in self.objects:
                    deleted.append(present(resource_type, self._delete_key(key, policy)[1]))
            return {
                "kind": resource_type.list_kind_name,
                "apiVersion": resource_type.api_version,
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": deleted,
            }
