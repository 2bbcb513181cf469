"""Raw JSON access to Kubernetes objects, without the client's model classes.

Objects are read and written as the plain dicts the API server sends, so a read-modify-write never drops a
field the installed client library does not know (a newer Kubernetes adds fields before the client does), and
hashes of what we read do not move when the library changes. These calls are synchronous: run them through
`activities.kube.client.run_blocking`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from activities.kube.client import is_not_found, retry_on_conflict

JsonObject = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """One REST resource: `api_version` as in manifests (`v1`, `apps/v1`), its plural and its kind."""

    api_version: str
    plural: str
    kind: str

    def path(self, namespace: str, name: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        collection = f"{prefix}/namespaces/{namespace}/{self.plural}"
        return collection if name is None else f"{collection}/{name}"


DEPLOYMENTS = Resource("apps/v1", "deployments", "Deployment")
DAEMONSETS = Resource("apps/v1", "daemonsets", "DaemonSet")
SERVICES = Resource("v1", "services", "Service")
CONFIGMAPS = Resource("v1", "configmaps", "ConfigMap")
SECRETS = Resource("v1", "secrets", "Secret")
HPAS = Resource("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
SCALED_OBJECTS = Resource("keda.sh/v1alpha1", "scaledobjects", "ScaledObject")


def _call(api: ApiClient, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
    # "object" makes the client hand back the decoded JSON untouched (no model classes).
    return api.call_api(
        path,
        method,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        _preload_content=True,
    )


def read(api: ApiClient, resource: Resource, namespace: str, name: str) -> JsonObject:
    result: JsonObject = _call(api, "GET", resource.path(namespace, name))
    return result


def read_optional(api: ApiClient, resource: Resource, namespace: str, name: str) -> JsonObject | None:
    """The object, or None when it does not exist (or its API group is not served)."""
    try:
        return read(api, resource, namespace, name)
    except ApiException as error:
        if is_not_found(error):
            return None
        raise


def create(api: ApiClient, resource: Resource, namespace: str, body: JsonObject) -> JsonObject:
    body = {"apiVersion": resource.api_version, "kind": resource.kind, **body}
    result: JsonObject = _call(api, "POST", resource.path(namespace), body)
    return result


def replace(api: ApiClient, resource: Resource, namespace: str, body: JsonObject) -> JsonObject:
    """PUT `body` (which carries the resourceVersion it was read with: a concurrent write gives 409 Conflict)."""
    result: JsonObject = _call(api, "PUT", resource.path(namespace, body["metadata"]["name"]), body)
    return result


def merge_patch(api: ApiClient, resource: Resource, namespace: str, name: str, patch: JsonObject) -> JsonObject:
    result: JsonObject = _call(api, "PATCH", resource.path(namespace, name), patch, MERGE_PATCH)
    return result


def upsert(
    api: ApiClient,
    resource: Resource,
    namespace: str,
    name: str,
    build: Callable[[JsonObject | None], JsonObject | None],
) -> JsonObject | None:
    """Create or update one object from its current state, conflict-safe.

    `build(current)` gets a copy of the object as it is now (None when missing) and returns the whole desired
    object, or None when nothing must change. It is called again after a 409, on the re-read object.
    """

    def attempt() -> JsonObject | None:
        for _ in range(3):
            current = read_optional(api, resource, namespace, name)
            desired = build(copy.deepcopy(current) if current is not None else None)
            if desired is None:
                return current
            desired.setdefault("metadata", {})["name"] = name
            if current is None:
                try:
                    return create(api, resource, namespace, desired)
                except ApiException as error:
                    if error.status == 409:  # created meanwhile: update what is there now
                        continue
                    raise
            desired["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            return replace(api, resource, namespace, desired)
        return read(api, resource, namespace, name)

    return retry_on_conflict(attempt)
