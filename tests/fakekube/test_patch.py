"""PATCH by Content-Type, and strategic merge patch semantics (the typed client's default for dict bodies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.samples import deployment, virtual_service
from tests.fakekube.smp import json_merge, strategic_merge

NS = "test"
ISTIO = ("networking.istio.io", "v1beta1", NS, "virtualservices")


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


# -- strategic merge patch, as a function -------------------------------------------------------------------------


def test_smp_merges_containers_by_name_and_keeps_the_sidecar() -> None:
    """Real: containers have patchMergeKey=name; patching one container leaves the others."""
    patched = strategic_merge(
        deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}}
    )
    assert [(c["name"], c["image"]) for c in containers(patched)] == [("app", "v2"), ("sidecar", "envoy:1.0")]
    assert containers(patched)[0]["ports"] == [{"containerPort": 9898}]


def test_smp_appends_new_list_items_and_merges_env_by_name() -> None:
    """Real: unknown merge keys are appended; env merges by name; `null` deletes a field."""
    original = deployment()
    containers(original)[0]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    patch = {
        "spec": {
            "replicas": None,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]},
                        {"name": "init", "image": "busybox"},
                    ]
                }
            },
        }
    }
    patched = strategic_merge(original, patch)
    assert containers(patched)[0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert [c["name"] for c in containers(patched)] == ["app", "sidecar", "init"]
    assert "replicas" not in patched["spec"]


def test_smp_patch_delete_and_replace_directives() -> None:
    """Real: `$patch: delete` removes a keyed element; `$patch: replace` replaces a list or map whole."""
    original = deployment()
    containers(original)[0]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    deleted = strategic_merge(
        original,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "$patch": "delete"}]}]}}}},
    )
    assert containers(deleted)[0]["env"] == [{"name": "B", "value": "2"}]
    replaced = strategic_merge(
        original,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}}},
    )
    assert containers(replaced) == [{"name": "only", "image": "x"}]
    replaced_map = strategic_merge(original, {"metadata": {"labels": {"$patch": "replace", "new": "1"}}})
    assert replaced_map["metadata"]["labels"] == {"new": "1"}
    dropped_map = strategic_merge(original, {"spec": {"template": {"metadata": {"$patch": "delete"}}}})
    assert "metadata" not in dropped_map["spec"]["template"]


def test_smp_atomic_lists_are_replaced() -> None:
    """Real: args, command, tolerations (no merge key) are replaced whole."""
    original = deployment()
    containers(original)[0]["args"] = ["--a", "--b"]
    patched = strategic_merge(
        original, {"spec": {"template": {"spec": {"containers": [{"name": "app", "args": ["--c"]}]}}}}
    )
    assert containers(patched)[0]["args"] == ["--c"]


def test_smp_service_ports_merge_by_port_and_container_ports_by_container_port() -> None:
    """Real: Service spec.ports patchMergeKey=port; container ports patchMergeKey=containerPort."""
    service = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 90}]}}
    patched = strategic_merge(service, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}})
    assert patched["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 90}]
    pod_patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9898, "name": "http"}]}]}}
        }
    }
    assert containers(strategic_merge(deployment(), pod_patch))[0]["ports"] == [{"containerPort": 9898, "name": "http"}]


def test_smp_finalizers_primitive_merge_and_delete_from_primitive_list() -> None:
    """Real: metadata.finalizers is a merged primitive list; `$deleteFromPrimitiveList/finalizers` removes items."""
    original = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge(original, {"metadata": {"finalizers": ["b", "c"]}})["metadata"]["finalizers"] == [
        "a",
        "b",
        "c",
    ]
    removed = strategic_merge(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]


def test_smp_conditions_merge_by_type_and_retain_keys() -> None:
    """Real: status.conditions patchMergeKey=type; `$retainKeys` drops keys not listed; `$setElementOrder` orders."""
    status = {
        "status": {"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}
    }
    patched = strategic_merge(status, {"status": {"conditions": [{"type": "Progressing", "status": "False"}]}})
    assert patched["status"]["conditions"][1] == {"type": "Progressing", "status": "False"}
    strategy = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    retained = strategic_merge(strategy, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert retained["spec"]["strategy"] == {"type": "Recreate"}
    ordered = strategic_merge(
        deployment(),
        {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}}},
    )
    assert [c["name"] for c in containers(ordered)] == ["sidecar", "app"]


def test_json_merge_patch_replaces_lists_and_null_deletes() -> None:
    """RFC 7386."""
    assert json_merge({"a": [1, 2], "b": {"c": 1, "d": 2}}, {"a": [3], "b": {"c": None}}) == {"a": [3], "b": {"d": 2}}


# -- over HTTP ----------------------------------------------------------------------------------------------------


def test_typed_client_dict_patch_is_strategic(kube: Clients, fake_kube: FakeKube) -> None:
    """The client rewrites dict patches to strategic-merge-patch+json; the sidecar survives; generation bumps."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    patched = kube.apps.patch_namespaced_deployment(
        "podinfo", NS, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "podinfo:6.0.1"}]}}}}
    )
    assert [(c.name, c.image) for c in patched.spec.template.spec.containers] == [
        ("app", "podinfo:6.0.1"),
        ("sidecar", "envoy:1.0"),
    ]
    assert patched.metadata.generation == 2
    assert fake_kube.requests[-1].content_type == "application/strategic-merge-patch+json"


def test_json_patch_list_body(kube: Clients) -> None:
    """A list body is sent as json-patch+json (RFC 6902); a failing op is 422."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    patched = kube.apps.patch_namespaced_deployment(
        "podinfo", NS, [{"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "envoy:2.0"}]
    )
    assert patched.spec.template.spec.containers[1].image == "envoy:2.0"
    with pytest.raises(ApiException) as raised:
        kube.apps.patch_namespaced_deployment("podinfo", NS, [{"op": "remove", "path": "/spec/nothing/here"}])
    assert raised.value.status == 422


def test_resource_version_in_patch_is_a_precondition(kube: Clients) -> None:
    """Real: metadata.resourceVersion inside a patch must match the stored one (else 409 Conflict)."""
    created = kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    ok = kube.core.patch_namespaced_config_map(
        "cfg", NS, {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"a": "2"}}
    )
    with pytest.raises(ApiException) as raised:
        kube.core.patch_namespaced_config_map(
            "cfg", NS, {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"a": "3"}}
        )
    assert ok.data == {"a": "2"}
    assert raised.value.status == 409 and json.loads(raised.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as json_patch_raised:
        kube.core.patch_namespaced_config_map(
            "cfg", NS, [{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}]
        )
    assert json_patch_raised.value.status == 409


def test_custom_objects_dict_patch_is_merge_patch(kube: Clients, fake_kube: FakeKube) -> None:
    """CustomObjectsApi sends merge-patch+json: lists are replaced whole."""
    kube.custom.create_namespaced_custom_object(*ISTIO, virtual_service())
    patched = kube.custom.patch_namespaced_custom_object(*ISTIO, "podinfo", {"spec": {"hosts": ["a", "b"]}})
    assert patched["spec"]["hosts"] == ["a", "b"]
    assert patched["metadata"]["generation"] == 2
    assert fake_kube.requests[-1].content_type == "application/merge-patch+json"


def test_strategic_merge_on_a_custom_resource_is_415(kube: Clients) -> None:
    """Real: custom resources accept json-patch, merge-patch and apply-patch only (415 UnsupportedMediaType)."""
    kube.custom.create_namespaced_custom_object(*ISTIO, virtual_service())
    with pytest.raises(ApiException) as raised:
        kube.custom.api_client.call_api(
            "/apis/networking.istio.io/v1beta1/namespaces/test/virtualservices/podinfo",
            "PATCH",
            header_params={"Content-Type": "application/strategic-merge-patch+json", "Accept": "application/json"},
            body={"spec": {"hosts": ["x"]}},
        )
    assert raised.value.status == 415
    assert json.loads(raised.value.body)["reason"] == "UnsupportedMediaType"


def test_patch_on_main_resource_ignores_status(kube: Clients) -> None:
    """Real: with a status subresource, main-resource writes keep the stored .status."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    before = kube.apps.read_namespaced_deployment("podinfo", NS)
    patched = kube.apps.patch_namespaced_deployment("podinfo", NS, {"status": {"readyReplicas": 99}})
    assert patched.status.ready_replicas == before.status.ready_replicas
    assert patched.metadata.resource_version == before.metadata.resource_version
