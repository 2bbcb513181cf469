"""Deletion lifecycle: finalizers, ownerReference garbage collection, namespace and CRD cascades."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.samples import deployment, virtual_service

NS = "test"


def owned_config_map(name: str, *owners: Any) -> dict[str, object]:
    references = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": o.metadata.name,
            "uid": o.metadata.uid,
        }
        for o in owners
    ]
    return {"metadata": {"name": name, "ownerReferences": references}}


def test_finalizers_hold_deletion_until_removed(kube: Clients) -> None:
    """Real: DELETE sets deletionTimestamp and answers 200 with the object; removing the last finalizer deletes it."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg", "finalizers": ["example.com/hold"]}})
    _, code, _ = kube.core.delete_namespaced_config_map_with_http_info("cfg", NS)
    held = kube.core.read_namespaced_config_map("cfg", NS)
    assert code == 200 and held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as raised:
        kube.core.patch_namespaced_config_map("cfg", NS, {"metadata": {"finalizers": ["example.com/new"]}})
    assert raised.value.status == 422  # no new finalizers once deleting
    kube.core.patch_namespaced_config_map(
        "cfg", NS, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/hold"]}}
    )
    with pytest.raises(ApiException) as gone:
        kube.core.read_namespaced_config_map("cfg", NS)
    assert gone.value.status == 404


def test_owner_deletion_collects_dependents(kube: Clients) -> None:
    """Real (background GC): dependents whose every owner is gone are deleted; others lose the dangling reference."""
    owner = kube.apps.create_namespaced_deployment(NS, deployment("owner"))
    other = kube.apps.create_namespaced_deployment(NS, deployment("other"))
    kube.core.create_namespaced_config_map(NS, owned_config_map("only-owned", owner))
    kube.core.create_namespaced_config_map(NS, owned_config_map("co-owned", owner, other))
    kube.apps.delete_namespaced_deployment("owner", NS)
    remaining = {c.metadata.name: c for c in kube.core.list_namespaced_config_map(NS).items}
    assert "only-owned" not in remaining
    assert [ref.name for ref in remaining["co-owned"].metadata.owner_references] == ["other"]


def test_orphan_propagation_keeps_dependents(kube: Clients) -> None:
    """Real: propagationPolicy=Orphan removes the ownerReference instead of deleting the dependent."""
    owner = kube.apps.create_namespaced_deployment(NS, deployment("owner"))
    kube.core.create_namespaced_config_map(NS, owned_config_map("dependent", owner))
    kube.apps.delete_namespaced_deployment("owner", NS, propagation_policy="Orphan")
    dependent = kube.core.read_namespaced_config_map("dependent", NS)
    assert dependent.metadata.owner_references is None


def test_orphan_policy_survives_a_finalizer_hold(kube: Clients) -> None:
    """Real: the orphan decision taken at DELETE time applies when the finalizers are finally removed."""
    body = deployment("owner")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    owner = kube.apps.create_namespaced_deployment(NS, body)
    kube.core.create_namespaced_config_map(NS, owned_config_map("dependent", owner))
    kube.apps.delete_namespaced_deployment("owner", NS, propagation_policy="Orphan")
    kube.apps.patch_namespaced_deployment("owner", NS, {"metadata": {"finalizers": None}})
    assert kube.core.read_namespaced_config_map("dependent", NS).metadata.owner_references is None


def test_namespace_deletion_deletes_its_contents(kube: Clients, fake_kube: FakeKube) -> None:
    """Real: deleting a Namespace answers it Terminating, deletes everything in it, then the namespace itself."""
    kube.core.create_namespace({"metadata": {"name": "doomed"}})
    kube.core.create_namespaced_config_map("doomed", {"metadata": {"name": "cfg"}})
    kube.custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", "doomed", "virtualservices", virtual_service(api_version="networking.istio.io/v1")
    )
    response = json.loads(kube.core.delete_namespace("doomed", _preload_content=False).data)
    assert response["kind"] == "Namespace" and response["status"]["phase"] == "Terminating"
    assert response["metadata"]["deletionTimestamp"]
    assert fake_kube.list("v1", "ConfigMap", "doomed") == []
    assert fake_kube.list("networking.istio.io/v1", "VirtualService", "doomed") == []
    assert fake_kube.get("v1", "Namespace", "doomed") is None


def test_namespace_with_held_content_stays_terminating(kube: Clients, fake_kube: FakeKube) -> None:
    """Real: a namespace stays Terminating while content with finalizers remains; new content is forbidden (403)."""
    kube.core.create_namespace({"metadata": {"name": "doomed"}})
    kube.core.create_namespaced_config_map("doomed", {"metadata": {"name": "cfg", "finalizers": ["example.com/hold"]}})
    kube.core.delete_namespace("doomed")
    assert kube.core.read_namespace("doomed").status.phase == "Terminating"
    with pytest.raises(ApiException) as raised:
        kube.core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert raised.value.status == 403
    kube.core.patch_namespaced_config_map("cfg", "doomed", {"metadata": {"finalizers": None}})
    assert fake_kube.get("v1", "Namespace", "doomed") is None


def test_crd_deletion_removes_routes_and_objects(kube: Clients) -> None:
    """Real: deleting a CRD deletes its custom resources and stops serving the group/version."""
    args = ("split.smi-spec.io", "v1alpha3", NS, "trafficsplits")
    split = {"apiVersion": "split.smi-spec.io/v1alpha3", "kind": "TrafficSplit", "metadata": {"name": "ts"}, "spec": {}}
    kube.custom.create_namespaced_custom_object(*args, split)
    kube.extensions.delete_custom_resource_definition("trafficsplits.split.smi-spec.io")
    with pytest.raises(ApiException) as raised:
        kube.custom.list_namespaced_custom_object(*args)
    assert raised.value.status == 404


def test_delete_collection_by_label(kube: Clients) -> None:
    """Real: DELETE on a collection deletes what the label selector matches."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "labels": {"app": "x"}}})
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "b", "labels": {"app": "y"}}})
    kube.core.delete_collection_namespaced_config_map(NS, label_selector="app=x")
    assert [c.metadata.name for c in kube.core.list_namespaced_config_map(NS).items] == ["b"]


def test_delete_collection_honours_orphan_dependents(kube: Clients) -> None:
    """Real: the deprecated orphanDependents=true orphans dependents on a collection DELETE as on a single one."""
    owner = kube.apps.create_namespaced_deployment(NS, deployment("owner"))
    kube.core.create_namespaced_config_map(NS, owned_config_map("dependent", owner))
    kube.apps.delete_collection_namespaced_deployment(NS, orphan_dependents=True)
    assert kube.apps.list_namespaced_deployment(NS).items == []
    assert kube.core.read_namespaced_config_map("dependent", NS).metadata.owner_references is None
