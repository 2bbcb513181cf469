"""Read-modify-write of the routing objects the Kubernetes routers own, as plain JSON dicts.

Every object (custom resources and the built-in Ingress alike) is read and written as raw JSON through
`activities.kube.rest`, so a router builds exactly the JSON Flagger would write. Functions here are synchronous:
routers run them inside `run_blocking`, one thread hop per activity, and each write goes through `rest.upsert`
(re-read, re-derive, re-write on 409).
`BlockingRouter` is that hop, shared by the routers built on these functions.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, ERR_NOT_FOUND, ReleaseTarget, Routes, SetRoutes
from activities.kube import owner, rest
from activities.kube.client import run_blocking
from canaryflow.spec import Canary

Object = rest.JsonObject

# Flagger's filterMetadata: keeps Flux from reverting the objects Flagger manages.
KUSTOMIZE_RECONCILE_ANNOTATION = "kustomize.toolkit.fluxcd.io/reconcile"
HELM_DRIFT_DETECTION_ANNOTATION = "helm.toolkit.fluxcd.io/driftDetection"
ORIGINAL_CONFIGURATION_ANNOTATION = "flagger.kubernetes.io/original-configuration"

ERR_ROUTES_NOT_READY = "RoutesNotReady"  # retryable: the routing object is missing its routes or not accepted yet


INGRESS = rest.Resource("networking.k8s.io/v1", "ingresses", "Ingress")


def invalid_spec(target: ReleaseTarget, message: str) -> ApplicationError:
    return ApplicationError(f"{target.key}: {message}", type=ERR_INVALID_SPEC, non_retryable=True)


def routes_not_ready(target: ReleaseTarget, message: str) -> ApplicationError:
    return ApplicationError(f"{target.key}: {message}", type=ERR_ROUTES_NOT_READY)


def percent(weight: int) -> int:
    """A weight read from a routing object, clamped to the 0..100 a `Routes` holds (hand-edited objects may
    carry any integer)."""
    return min(max(weight, 0), 100)


def managed_annotations(annotations: dict[str, str]) -> dict[str, str]:
    """`annotations` plus the two annotations that stop Flux from overriding a Flagger-managed object."""
    return {
        **annotations,
        KUSTOMIZE_RECONCILE_ANNOTATION: "disabled",
        HELM_DRIFT_DETECTION_ANNOTATION: "disabled",
    }


def apex_metadata(canary: Canary) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations (plus Flux's opt-outs) of `spec.service.apex`, for a routing object named after
    the apex Service."""
    apex = canary.spec.service.apex
    labels = dict(apex.labels) if apex is not None else {}
    annotations = dict(apex.annotations) if apex is not None else {}
    return labels, managed_annotations(annotations)


def without_empty(value: Any) -> Any:
    """`value` with None, empty lists/dicts/strings and False removed at every depth (go-cmp's EquateEmpty plus
    Go's omitempty), so a spec read back from the API server compares equal to the one that was written."""
    if isinstance(value, dict):
        pruned = {key: without_empty(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in (None, [], {}, "", False)}
    if isinstance(value, list):
        return [without_empty(item) for item in value]
    return value


def new_object(resource: rest.Resource, namespace: str, name: str, spec: Object, **metadata: Any) -> Object:
    """A body for `create`: apiVersion, kind, metadata (name, namespace and the given non-empty fields) and spec."""
    meta: Object = {"name": name, "namespace": namespace}
    meta.update({key: value for key, value in metadata.items() if value})
    return {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": meta, "spec": spec}


def replace_changed_spec(
    desired: Object, comparable: Callable[[Object], Any] = without_empty
) -> Callable[[Object], Object | None]:
    """An `upsert` update that writes `desired` as the spec unless `comparable` finds the current spec the same."""

    def update(existing: Object) -> Object | None:
        if comparable(existing.get("spec") or {}) == comparable(desired):
            return None
        existing["spec"] = desired
        return existing

    return update


def with_spec_and_metadata(
    existing: Object, spec: Object, labels: dict[str, str], annotations: dict[str, str], *, same_spec: bool
) -> Object | None:
    """An `upsert` update's result: `existing` with this spec, labels and annotations, or None (no write) when the
    spec is `same_spec`, the labels are equal but for empty values and the annotations are equal."""
    metadata = existing.setdefault("metadata", {})
    same_labels = without_empty(labels) == without_empty(metadata.get("labels") or {})
    if same_spec and same_labels and annotations == (metadata.get("annotations") or {}):
        return None
    existing["spec"] = spec
    metadata["labels"] = labels
    metadata["annotations"] = annotations
    return existing


def with_owners(body: Object, owners: list[Object]) -> Object:
    if owners:
        body["metadata"]["ownerReferences"] = owners
    return body


def upsert(
    api_client: k8s.ApiClient,
    resource: rest.Resource,
    namespace: str,
    name: str,
    *,
    create: Callable[[], Object],
    update: Callable[[Object], Object | None],
) -> None:
    """Create the object with `create()` if it is missing, else replace it with `update(existing)` unless that
    returns None (nothing to change: no write). `update` gets a deep copy and is called again after a conflict."""

    def build(existing: Object | None) -> Object | None:
        return create() if existing is None else update(existing)

    rest.upsert(api_client, resource, namespace, name, build)


def modify(
    api_client: k8s.ApiClient,
    resource: rest.Resource,
    namespace: str,
    name: str,
    change: Callable[[Object], Object | None],
) -> Object | None:
    """Replace an existing object with `change(copy)` (None: no write). Returns None when the object is missing."""

    def build(existing: Object | None) -> Object | None:
        if existing is None:
            return None
        changed = change(copy.deepcopy(existing))
        return None if changed is None or changed == existing else changed

    return rest.upsert(api_client, resource, namespace, name, build)


def canary_owner_references(api_client: k8s.ApiClient, canary: Canary) -> list[Object]:
    """A controller reference to the Canary object when it exists in the cluster (controller mode), else none:
    a release started from a file (`canaryflow release -f`) has no Canary object to own anything. The lookup
    is the workload provider's, so workloads and routing objects get the same owner."""
    reference = owner.controller_reference(owner.find_canary_object(api_client, canary))
    return [reference] if reference is not None else []


class BlockingRouter(ABC):
    """A router whose work is synchronous Kubernetes calls on one routing object kind: each activity is one
    `run_blocking` thread hop into `_reconcile`, `_set_routes`, `_get_routes` or `_finalize`."""

    kind: ClassVar[str]  # how errors name the routing object, e.g. "HTTPRoute"

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._api = api_client

    async def reconcile(self, target: ReleaseTarget) -> None:
        await run_blocking(self._reconcile, target)

    async def set_routes(self, request: SetRoutes) -> None:
        await run_blocking(self._set_routes, request)

    async def get_routes(self, target: ReleaseTarget) -> Routes:
        return await run_blocking(self._get_routes, target)

    async def finalize(self, target: ReleaseTarget) -> None:
        await run_blocking(self._finalize, target)

    @abstractmethod
    def _reconcile(self, target: ReleaseTarget) -> None: ...

    @abstractmethod
    def _set_routes(self, request: SetRoutes) -> None: ...

    @abstractmethod
    def _get_routes(self, target: ReleaseTarget) -> Routes: ...

    def _finalize(self, target: ReleaseTarget) -> None:
        """Flagger leaves the routing object as it is; the Canary's ownerReference garbage-collects it."""
        return None

    def _owned(self, canary: Canary, body: Object) -> Object:
        """`body` with a controller reference to the Canary object, when there is one."""
        return with_owners(body, canary_owner_references(self._api, canary))

    def _read_existing(self, target: ReleaseTarget, resource: rest.Resource, name: str) -> Object:
        found = rest.read_optional(self._api, resource, target.canary.metadata.namespace, name)
        if found is None:
            raise self._missing(target, name)
        return found

    def _modify_existing(
        self, target: ReleaseTarget, resource: rest.Resource, name: str, change: Callable[[Object], Object | None]
    ) -> None:
        if modify(self._api, resource, target.canary.metadata.namespace, name, change) is None:
            raise self._missing(target, name)

    def _require_weights(self, target: ReleaseTarget, name: str, primary_weight: int, canary_weight: int) -> None:
        """Flagger's check that the object routes to the primary or the canary at all."""
        if primary_weight == 0 and canary_weight == 0:
            raise routes_not_ready(
                target, f"{self.kind} {name} does not contain routes for {name}-primary and {name}-canary"
            )

    def _missing(self, target: ReleaseTarget, name: str) -> ApplicationError:
        return ApplicationError(
            f"{target.key}: {self.kind} {name}.{target.canary.metadata.namespace} not found (run reconcile first)",
            type=ERR_NOT_FOUND,
            non_retryable=True,
        )
