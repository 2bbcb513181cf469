"""What the server knows about each resource type: names, scope, subresources and per-kind registry rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ScaleSpec:
    """Where a kind keeps what the `/scale` subresource reads and writes (JSON paths like `.spec.replicas`)."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = None  # None = built-in: derive from spec.selector


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    scale: ScaleSpec | None = None
    tracks_generation: bool = False
    custom: bool = False
    # The registry's ReturnDeletedObject: the deleted object instead of a Status{Success} in the DELETE response.
    returns_deleted_object: bool = False
    list_kind: str = ""
    singular: str = ""
    # Custom resources of one CRD share storage across versions (no conversion: only apiVersion is rewritten).
    storage_group_resource: tuple[str, str] = field(default=("", ""))
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        return self.storage_group_resource if self.storage_group_resource[1] else (self.group, self.plural)

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


def _apps_workload(kind: str, plural: str, short_name: str, *, scalable: bool = True) -> ResourceType:
    return ResourceType(
        "apps",
        "v1",
        kind,
        plural,
        short_names=(short_name,),
        has_status=True,
        scale=ScaleSpec() if scalable else None,
        tracks_generation=True,
        categories=("all",),
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        short_names=("ns",),
        has_status=True,
        returns_deleted_object=True,
    ),
    ResourceType(
        "",
        "v1",
        "Service",
        "services",
        short_names=("svc",),
        has_status=True,
        returns_deleted_object=True,
        categories=("all",),
    ),
    ResourceType("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    ResourceType("", "v1", "Secret", "secrets"),
    ResourceType("", "v1", "Event", "events", short_names=("ev",)),
    ResourceType(
        "", "v1", "Pod", "pods", short_names=("po",), has_status=True, returns_deleted_object=True, categories=("all",)
    ),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), returns_deleted_object=True),
    ResourceType("", "v1", "Endpoints", "endpoints", short_names=("ep",), singular="endpoints"),
    ResourceType("events.k8s.io", "v1", "Event", "events", short_names=("ev",)),
    _apps_workload("Deployment", "deployments", "deploy"),
    _apps_workload("DaemonSet", "daemonsets", "ds", scalable=False),
    _apps_workload("ReplicaSet", "replicasets", "rs"),
    _apps_workload("StatefulSet", "statefulsets", "sts"),
    ResourceType(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        has_status=True,
        categories=("all",),
    ),
    ResourceType(
        "networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",), has_status=True, tracks_generation=True
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short_names=("crd", "crds"),
        has_status=True,
        tracks_generation=True,
    ),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases"),
)

# What `/scale` reads and writes: patches to it are applied to this type, not to the scaled object's.
SCALE_TYPE = ResourceType(group="autoscaling", version="v1", kind="Scale", plural="scale")
