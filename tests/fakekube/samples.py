"""Sample objects for fakekube's tests."""

from __future__ import annotations

from typing import Any


def deployment(
    name: str = "podinfo", *, replicas: int | None = 2, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    selector = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": selector},
            "spec": {
                "containers": [
                    {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.0.0", "ports": [{"containerPort": 9898}]},
                    {"name": "sidecar", "image": "envoy:1.0"},
                ]
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or selector},
        "spec": spec,
    }


def virtual_service(name: str = "podinfo", api_version: str = "networking.istio.io/v1beta1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": f"{name}-primary"}, "weight": 100}]}]},
    }


def crd(group: str, names: dict[str, Any], scope: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    """A CustomResourceDefinition named `<plural>.<group>`, as the apiserver requires."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{group}"},
        "spec": {"group": group, "names": names, "scope": scope, "versions": versions},
    }
