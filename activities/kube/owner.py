"""The Canary object that owns generated objects, when it exists in the cluster.

In controller mode the Canary is a custom resource (group `canaryflow.dev` or `flagger.app`), and generated
objects get it as controller owner so Kubernetes garbage-collects them with it. In CLI mode
(`canaryflow release -f canary.yaml`) there is no such object (or no permission to read it) and generated
objects have no owner.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from activities.kube import rest
from canaryflow.spec import API_VERSIONS, Canary


def _canaries(api_version: str) -> rest.Resource:
    return rest.Resource(api_version, "canaries", "Canary")


def find_canary_object(api: ApiClient, canary: Canary) -> rest.JsonObject | None:
    """The Canary object named like `canary`, looked up in its own API group first. Blocking."""
    versions = [canary.api_version, *(version for version in API_VERSIONS if version != canary.api_version)]
    for api_version in versions:
        try:
            found = rest.read_optional(api, _canaries(api_version), canary.metadata.namespace, canary.metadata.name)
        except ApiException as error:
            if error.status == 403:  # e.g. a CI identity allowed to edit workloads but not to read Canaries
                continue
            raise
        if found is not None:
            return found
    return None


def controller_reference(canary_object: rest.JsonObject | None) -> dict[str, Any] | None:
    """An ownerReference making the Canary object the controller, or None without an object."""
    if canary_object is None or not canary_object.get("metadata", {}).get("uid"):
        return None
    return {
        "apiVersion": canary_object["apiVersion"],
        "kind": "Canary",
        "name": canary_object["metadata"]["name"],
        "uid": canary_object["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
