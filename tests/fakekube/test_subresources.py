"""The /status and /scale subresources, for built-ins and for CRDs that declare them."""

from __future__ import annotations

import copy

import pytest
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.samples import crd, deployment

NS = "test"
CANARY = ("flagger.app", "v1beta1", NS, "canaries")

WIDGET_CRD = crd(
    "example.com",
    {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
    "Namespaced",
    [
        {
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "subresources": {
                "status": {},
                "scale": {
                    "specReplicasPath": ".spec.size",
                    "statusReplicasPath": ".status.size",
                    "labelSelectorPath": ".status.selector",
                },
            },
        }
    ],
)


def canary() -> dict[str, object]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"}},
        "status": {"phase": "Succeeded"},
    }


def test_status_subresource_writes_only_status(kube: Clients) -> None:
    """Real: PATCH /status changes .status only (spec edits in the same body are ignored), bumps RV not generation."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    before = kube.apps.read_namespaced_deployment("podinfo", NS)
    after = kube.apps.patch_namespaced_deployment_status(
        "podinfo", NS, {"spec": {"replicas": 9}, "status": {"conditions": [{"type": "Custom", "status": "True"}]}}
    )
    assert after.spec.replicas == 2
    assert [c.type for c in after.status.conditions] == ["Available", "Progressing", "Custom"]
    assert after.metadata.generation == before.metadata.generation
    assert int(after.metadata.resource_version) > int(before.metadata.resource_version)


def test_custom_resource_status_subresource(kube: Clients) -> None:
    """Real (CRD with subresources.status): create drops .status; main writes ignore it; /status sets it."""
    created = kube.custom.create_namespaced_custom_object(*CANARY, canary())
    assert "status" not in created
    ignored = kube.custom.patch_namespaced_custom_object(*CANARY, "podinfo", {"status": {"phase": "Failed"}})
    assert "status" not in ignored and ignored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    written = kube.custom.patch_namespaced_custom_object_status(
        *CANARY, "podinfo", {"status": {"phase": "Progressing"}}
    )
    assert written["status"] == {"phase": "Progressing"}
    assert written["metadata"]["generation"] == 1
    replaced = copy.deepcopy(written)
    replaced["status"]["phase"] = "Succeeded"
    assert kube.custom.replace_namespaced_custom_object_status(*CANARY, "podinfo", replaced)["status"]["phase"] == (
        "Succeeded"
    )


def test_custom_resource_without_status_subresource_bumps_generation_on_status(kube: Clients) -> None:
    """Real: without a status subresource, .status is ordinary content (and counts for generation)."""
    split = {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": "podinfo"},
        "spec": {"service": "podinfo", "backends": []},
        "status": {"x": 1},
    }
    args = ("split.smi-spec.io", "v1alpha2", NS, "trafficsplits")
    created = kube.custom.create_namespaced_custom_object(*args, split)
    patched = kube.custom.patch_namespaced_custom_object(*args, "podinfo", {"status": {"x": 2}})
    assert created["status"] == {"x": 1}
    assert (patched["status"], patched["metadata"]["generation"]) == ({"x": 2}, 2)
    with pytest.raises(ApiException) as raised:
        kube.custom.get_namespaced_custom_object_status(*args, "podinfo")
    assert raised.value.status == 404


def test_deployment_scale_subresource(kube: Clients) -> None:
    """Real: /scale speaks autoscaling/v1 Scale with a string selector; writes set spec.replicas and bump generation."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    scale = kube.apps.read_namespaced_deployment_scale("podinfo", NS)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=podinfo")
    patched = kube.apps.patch_namespaced_deployment_scale("podinfo", NS, {"spec": {"replicas": 0}})
    assert patched.spec.replicas == 0
    stored = kube.apps.read_namespaced_deployment("podinfo", NS)
    assert (stored.spec.replicas, stored.metadata.generation) == (0, 2)
    scale = kube.apps.read_namespaced_deployment_scale("podinfo", NS)
    scale.spec.replicas = 3
    assert kube.apps.replace_namespaced_deployment_scale("podinfo", NS, scale).spec.replicas == 3
    scale.spec.replicas = 4  # scale.metadata.resourceVersion is stale now
    with pytest.raises(ApiException) as raised:
        kube.apps.replace_namespaced_deployment_scale("podinfo", NS, scale)
    assert raised.value.status == 409


def test_custom_resource_scale_follows_the_crd_paths(kube: Clients, fake_kube: FakeKube) -> None:
    """Real: a CRD's scale subresource reads/writes specReplicasPath, statusReplicasPath, labelSelectorPath."""
    kube.extensions.create_custom_resource_definition(WIDGET_CRD)
    args = ("example.com", "v1", NS, "widgets")
    kube.custom.create_namespaced_custom_object(
        *args, {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    )
    kube.custom.patch_namespaced_custom_object_status(*args, "w", {"status": {"size": 1, "selector": "app=w"}})
    scale = kube.custom.get_namespaced_custom_object_scale(*args, "w")
    assert (scale["spec"]["replicas"], scale["status"]["replicas"], scale["status"]["selector"]) == (1, 1, "app=w")
    kube.custom.patch_namespaced_custom_object_scale(*args, "w", {"spec": {"replicas": 5}})
    stored = fake_kube.get("example.com/v1", "Widget", "w", NS)
    assert stored is not None and stored["spec"]["size"] == 5 and stored["metadata"]["generation"] == 2


def test_subresource_missing_on_kind_is_404(kube: Clients) -> None:
    """Real: ConfigMaps have no /status; Services have no /scale."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}})
    with pytest.raises(ApiException) as raised:
        kube.api.call_api("/api/v1/namespaces/test/configmaps/cfg/status", "GET", auth_settings=[])
    assert raised.value.status == 404
