"""Objects shared by the controller and CI-mode tests (the worker itself: `release_worker`)."""

from __future__ import annotations

from typing import Any

from tests.kube.release_worker import IMAGE_V1, podinfo_deployment

CANARYFLOW_API_VERSION = "canaryflow.dev/v1beta1"


def podinfo_variant(
    namespace: str,
    *,
    name: str = "podinfo",
    image: str = IMAGE_V1,
    replicas: int = 2,
    sidecar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The podinfo Deployment named `name` (pods labelled app=`name`), with `replicas` and a `sidecar` container
    before podinfod."""
    body = podinfo_deployment(namespace, image)
    labels = {"app": name}
    body["metadata"]["name"] = name
    body["spec"]["replicas"] = replicas
    body["spec"]["selector"]["matchLabels"] = labels
    body["spec"]["template"]["metadata"]["labels"] = labels
    if sidecar is not None:
        body["spec"]["template"]["spec"]["containers"].insert(0, sidecar)
    return body


def podinfo_canary(
    namespace: str, analysis: dict[str, Any], *, api_version: str = CANARYFLOW_API_VERSION, **spec: Any
) -> dict[str, Any]:
    """A Canary `podinfo` for the podinfo Deployment on port 9898; `spec` adds or replaces spec fields."""
    return {
        "apiVersion": api_version,
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": analysis,
            **spec,
        },
    }
