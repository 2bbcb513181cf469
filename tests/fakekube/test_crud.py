"""Create, read, list, replace and delete through the real typed client, against the apiserver rules they mirror."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.samples import deployment, virtual_service

NS = "test"


def status_of(error: ApiException) -> dict[str, object]:
    body: dict[str, object] = json.loads(error.body)
    return body


def test_create_answers_201_with_server_owned_metadata(kube: Clients) -> None:
    """Real: POST returns 201 with uid, creationTimestamp, resourceVersion, generation 1, namespace from the URL."""
    _, code, _ = kube.apps.create_namespaced_deployment_with_http_info(NS, deployment())
    stored = kube.apps.read_namespaced_deployment("podinfo", NS)
    assert code == 201
    assert stored.metadata.namespace == NS
    assert stored.metadata.uid and stored.metadata.creation_timestamp is not None
    assert int(stored.metadata.resource_version) > 0
    assert stored.metadata.generation == 1


def test_create_fills_replicas_and_drops_client_status(kube: Clients) -> None:
    """Real: Deployment replicas default to 1; the status subresource kinds ignore .status on create."""
    body = deployment(replicas=None)
    body["status"] = {"readyReplicas": 5}
    created = kube.apps.create_namespaced_deployment(NS, body)
    assert created.spec.replicas == 1
    assert created.status.ready_replicas is None


def test_generate_name_appends_a_random_suffix(kube: Clients) -> None:
    """Real: metadata.generateName + 5 random characters when no name is given."""
    first = kube.core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}})
    second = kube.core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}})
    assert first.metadata.name.startswith("cfg-") and len(first.metadata.name) == len("cfg-") + 5
    assert first.metadata.name != second.metadata.name


def test_duplicate_create_is_409_already_exists(kube: Clients) -> None:
    """Real: 409 AlreadyExists, message `deployments.apps "podinfo" already exists`."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    with pytest.raises(ApiException) as raised:
        kube.apps.create_namespaced_deployment(NS, deployment())
    status = status_of(raised.value)
    assert (raised.value.status, status["reason"]) == (409, "AlreadyExists")
    assert status["message"] == 'deployments.apps "podinfo" already exists'
    assert status["details"] == {"name": "podinfo", "group": "apps", "kind": "deployments"}


def test_missing_object_is_404_not_found_status(kube: Clients) -> None:
    """Real: a Status with reason NotFound, message `<resource>.<group> "<name>" not found`."""
    with pytest.raises(ApiException) as raised:
        kube.apps.read_namespaced_deployment("absent", NS)
    status = status_of(raised.value)
    assert status["kind"] == "Status" and status["status"] == "Failure" and status["code"] == 404
    assert status["message"] == 'deployments.apps "absent" not found'
    with pytest.raises(ApiException) as core_raised:
        kube.core.read_namespaced_config_map("absent", NS)
    assert status_of(core_raised.value)["message"] == 'configmaps "absent" not found'


def test_create_in_missing_namespace_is_404(kube: Clients) -> None:
    """Real: the NamespaceLifecycle admission answers 404 `namespaces "nowhere" not found`."""
    with pytest.raises(ApiException) as raised:
        kube.core.create_namespaced_config_map("nowhere", {"metadata": {"name": "cfg"}})
    assert raised.value.status == 404
    assert status_of(raised.value)["message"] == 'namespaces "nowhere" not found'


def test_namespace_in_body_must_match_url(kube: Clients) -> None:
    """Real: 400 BadRequest when metadata.namespace differs from the URL's namespace."""
    with pytest.raises(ApiException) as raised:
        kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg", "namespace": "default"}})
    assert raised.value.status == 400
    assert status_of(raised.value)["reason"] == "BadRequest"


@pytest.mark.parametrize("name", ["Upper", "under_score", "-leading"])
def test_invalid_names_are_422(kube: Clients, name: str) -> None:
    """Real: names are validated as DNS-1123 subdomains (422 Invalid, field metadata.name)."""
    with pytest.raises(ApiException) as raised:
        kube.core.create_namespaced_config_map(NS, {"metadata": {"name": name}})
    status = status_of(raised.value)
    assert (raised.value.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "metadata.name"  # type: ignore[index]


def test_resource_version_in_create_body_is_rejected(kube: Clients) -> None:
    """Real: `resourceVersion should not be set on objects to be created` (500 from the storage layer)."""
    with pytest.raises(ApiException) as raised:
        kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg", "resourceVersion": "7"}})
    assert raised.value.status == 500
    assert "resourceVersion should not be set" in status_of(raised.value)["message"]  # type: ignore[operator]


def test_service_gets_a_cluster_ip_kept_across_replace(kube: Clients) -> None:
    """Real: clusterIP is allocated on create; a PUT that omits it keeps it; changing it is 422 (immutable)."""
    created = kube.core.create_namespaced_service(
        NS, {"metadata": {"name": "podinfo"}, "spec": {"selector": {"app": "podinfo"}, "ports": [{"port": 80}]}}
    )
    ip = created.spec.cluster_ip
    assert ip and created.spec.cluster_ips == [ip]
    assert created.spec.ports[0].protocol == "TCP" and created.spec.ports[0].target_port == 80
    replaced = kube.core.replace_namespaced_service(
        "podinfo",
        NS,
        {
            "metadata": {"name": "podinfo", "resourceVersion": created.metadata.resource_version},
            "spec": {"selector": {"app": "other"}, "ports": [{"port": 8080}]},
        },
    )
    assert replaced.spec.cluster_ip == ip and replaced.spec.selector == {"app": "other"}
    with pytest.raises(ApiException) as raised:
        kube.core.patch_namespaced_service("podinfo", NS, {"spec": {"clusterIP": "10.0.0.99"}})
    assert raised.value.status == 422
    other = kube.core.create_namespaced_service(NS, {"metadata": {"name": "other"}, "spec": {"ports": [{"port": 80}]}})
    assert other.spec.cluster_ip != ip


def test_list_carries_kind_and_current_resource_version(kube: Clients, fake_kube: FakeKube) -> None:
    """Real: `<Kind>List` whose metadata.resourceVersion is the store's current revision; all-namespace lists."""
    kube.apps.create_namespaced_deployment(NS, deployment("a"))
    kube.apps.create_namespaced_deployment("default", deployment("b"))
    listed = kube.apps.list_namespaced_deployment(NS)
    everywhere = kube.apps.list_deployment_for_all_namespaces()
    assert listed.kind == "DeploymentList"
    assert [d.metadata.name for d in listed.items] == ["a"]
    assert sorted(d.metadata.name for d in everywhere.items) == ["a", "b"]
    assert listed.metadata.resource_version == str(fake_kube.store.resource_version)


def test_list_pagination_with_limit_and_continue(kube: Clients) -> None:
    """Real: `limit` cuts the list and `continue` resumes it; the last page has no continue token."""
    for index in range(5):
        kube.core.create_namespaced_config_map(NS, {"metadata": {"name": f"cfg-{index}"}})
    first = kube.core.list_namespaced_config_map(NS, limit=2)
    second = kube.core.list_namespaced_config_map(NS, limit=2, _continue=first.metadata._continue)
    third = kube.core.list_namespaced_config_map(NS, limit=2, _continue=second.metadata._continue)
    names = [c.metadata.name for page in (first, second, third) for c in page.items]
    assert names == [f"cfg-{index}" for index in range(5)]
    assert first.metadata.remaining_item_count == 3 and third.metadata._continue is None


def test_replace_with_stale_resource_version_is_409_conflict(kube: Clients) -> None:
    """Real: optimistic concurrency; a PUT carrying an old resourceVersion gets the Conflict message."""
    created = kube.apps.create_namespaced_deployment(NS, deployment())
    kube.apps.patch_namespaced_deployment("podinfo", NS, {"metadata": {"labels": {"touched": "yes"}}})
    created.spec.replicas = 5
    with pytest.raises(ApiException) as raised:
        kube.apps.replace_namespaced_deployment("podinfo", NS, created)
    status = status_of(raised.value)
    assert (raised.value.status, status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "podinfo": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_replace_bumps_generation_only_on_spec_change(kube: Clients) -> None:
    """Real: metadata.generation increments when the spec changes, not on label/annotation changes."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    current = kube.apps.read_namespaced_deployment("podinfo", NS)
    current.metadata.labels["team"] = "web"
    relabelled = kube.apps.replace_namespaced_deployment("podinfo", NS, current)
    relabelled.spec.template.spec.containers[0].image = "podinfo:6.0.1"
    rolled = kube.apps.replace_namespaced_deployment("podinfo", NS, relabelled)
    assert (relabelled.metadata.generation, rolled.metadata.generation) == (1, 2)
    assert int(rolled.metadata.resource_version) > int(relabelled.metadata.resource_version)


def test_replace_without_resource_version_is_unconditional_for_builtins(kube: Clients) -> None:
    """Real: AllowUnconditionalUpdate for built-ins: a PUT with no resourceVersion overwrites."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    replaced = kube.core.replace_namespaced_config_map("cfg", NS, {"metadata": {"name": "cfg"}, "data": {"a": "2"}})
    assert replaced.data == {"a": "2"}


def test_replace_custom_resource_without_resource_version_is_422(kube: Clients) -> None:
    """Real: custom resources require metadata.resourceVersion on update (`must be specified for an update`)."""
    kube.custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NS, "virtualservices", virtual_service()
    )
    with pytest.raises(ApiException) as raised:
        kube.custom.replace_namespaced_custom_object(
            "networking.istio.io", "v1beta1", NS, "virtualservices", "podinfo", virtual_service()
        )
    assert raised.value.status == 422
    assert "must be specified for an update" in status_of(raised.value)["message"]  # type: ignore[operator]


def test_replace_name_mismatch_is_400(kube: Clients) -> None:
    """Real: 400 when the body's metadata.name differs from the URL."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}})
    with pytest.raises(ApiException) as raised:
        kube.core.replace_namespaced_config_map("cfg", NS, {"metadata": {"name": "other"}})
    assert raised.value.status == 400


def test_replace_keeps_server_owned_metadata(kube: Clients) -> None:
    """Real: uid, creationTimestamp and generation cannot be overwritten by a PUT."""
    created = kube.apps.create_namespaced_deployment(NS, deployment())
    body = deployment()
    body["metadata"].update({"uid": "forged", "creationTimestamp": "2001-01-01T00:00:00Z", "generation": 40})
    replaced = kube.apps.replace_namespaced_deployment("podinfo", NS, body)
    assert replaced.metadata.uid == created.metadata.uid
    assert replaced.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert replaced.metadata.generation == 1


def test_deployment_selector_is_immutable(kube: Clients) -> None:
    """Real: apps/v1 Deployment spec.selector is immutable (422 `field is immutable`)."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    body = deployment()
    body["spec"]["selector"] = {"matchLabels": {"app": "podinfo", "track": "x"}}
    body["spec"]["template"]["metadata"]["labels"]["track"] = "x"
    with pytest.raises(ApiException) as raised:
        kube.apps.replace_namespaced_deployment("podinfo", NS, body)
    status = status_of(raised.value)
    assert raised.value.status == 422 and "field is immutable" in status["message"]  # type: ignore[operator]
    assert status["details"]["causes"][0]["field"] == "spec.selector"  # type: ignore[index]


def test_deployment_selector_must_match_template_labels(kube: Clients) -> None:
    """Real: 422 `selector` does not match template `labels`."""
    body = deployment()
    body["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as raised:
        kube.apps.create_namespaced_deployment(NS, body)
    assert raised.value.status == 422


def test_no_op_write_keeps_resource_version(kube: Clients, fake_kube: FakeKube) -> None:
    """Real: an update that changes nothing is not written: same resourceVersion, no watch event."""
    created = kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    events_before = len(fake_kube.store.events)
    patched = kube.core.patch_namespaced_config_map("cfg", NS, {"data": {"a": "1"}})
    replaced = kube.core.replace_namespaced_config_map("cfg", NS, created)
    assert patched.metadata.resource_version == created.metadata.resource_version
    assert replaced.metadata.resource_version == created.metadata.resource_version
    assert len(fake_kube.store.events) == events_before


def test_delete_response_depends_on_the_kind(kube: Clients) -> None:
    """Real: Pods/Services/ServiceAccounts return the deleted object; others (and CRs) a Status Success."""
    kube.core.create_namespaced_service(NS, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}})
    kube.custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NS, "virtualservices", virtual_service()
    )
    deleted_service = kube.core.delete_namespaced_service("svc", NS)
    deleted_config = kube.core.delete_namespaced_config_map("cfg", NS)
    deleted_custom = kube.custom.delete_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NS, "virtualservices", "podinfo"
    )
    assert deleted_service.kind == "Service" and deleted_service.metadata.name == "svc"
    assert deleted_config.status == "Success" and deleted_config.details.name == "cfg"
    assert deleted_custom["status"] == "Success"
    assert deleted_custom["details"]["group"] == "networking.istio.io"
    with pytest.raises(ApiException) as raised:
        kube.core.delete_namespaced_config_map("cfg", NS)
    assert raised.value.status == 404


def test_delete_preconditions_are_409(kube: Clients) -> None:
    """Real: DeleteOptions.preconditions uid/resourceVersion mismatch → 409 `Precondition failed`."""
    created = kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}})
    with pytest.raises(ApiException) as raised:
        kube.core.delete_namespaced_config_map("cfg", NS, body={"preconditions": {"uid": "someone-else"}})
    assert raised.value.status == 409
    assert "Precondition failed: UID in precondition" in status_of(raised.value)["message"]  # type: ignore[operator]
    with pytest.raises(ApiException):
        kube.core.delete_namespaced_config_map("cfg", NS, body={"preconditions": {"resourceVersion": "1"}})
    preconditions = {"uid": created.metadata.uid, "resourceVersion": created.metadata.resource_version}
    kube.core.delete_namespaced_config_map("cfg", NS, body={"preconditions": preconditions})


def test_custom_object_create_returns_the_object(kube: Clients) -> None:
    """Real: 201 with the stored object (the client maps only 201 to a body), generation 1 for CRs."""
    created = kube.custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NS, "virtualservices", virtual_service()
    )
    assert created["metadata"]["generation"] == 1 and created["metadata"]["namespace"] == NS


def test_multi_version_crd_serves_the_same_object_per_version(kube: Clients) -> None:
    """Real: one storage per CRD; each served version returns the object with its own apiVersion."""
    kube.custom.create_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NS, "virtualservices", virtual_service()
    )
    as_v1 = kube.custom.get_namespaced_custom_object("networking.istio.io", "v1", NS, "virtualservices", "podinfo")
    assert as_v1["apiVersion"] == "networking.istio.io/v1"
    assert as_v1["spec"]["hosts"] == ["podinfo"]


def test_unregistered_group_is_404(kube: Clients) -> None:
    """Real: routes exist only for served group/versions/resources."""
    with pytest.raises(ApiException) as raised:
        kube.custom.list_namespaced_custom_object("nothing.example.com", "v1", NS, "widgets")
    assert raised.value.status == 404
    with pytest.raises(ApiException) as unknown_version:
        kube.custom.list_namespaced_custom_object("networking.istio.io", "v9", NS, "virtualservices")
    assert unknown_version.value.status == 404


def test_hpa_v2_round_trips(kube: Clients) -> None:
    """autoscaling/v2 HorizontalPodAutoscaler: atomic metrics list, status ignored on main-resource writes."""
    hpa = {
        "metadata": {"name": "podinfo"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 99}},
                }
            ],
        },
    }
    kube.autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, hpa)
    patched = kube.autoscaling.patch_namespaced_horizontal_pod_autoscaler(
        "podinfo", NS, {"spec": {"scaleTargetRef": {"name": "podinfo-primary"}}}
    )
    assert patched.spec.scale_target_ref.name == "podinfo-primary"
    assert patched.spec.metrics[0].resource.target.average_utilization == 99


def test_secret_string_data_is_stored_as_base64_data(kube: Clients) -> None:
    """Real: stringData is write-only, merged into data as base64 (stringData wins); type defaults to Opaque."""
    created = kube.core.create_namespaced_secret(
        NS, {"metadata": {"name": "token"}, "data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new"}}
    )
    assert created.data == {"a": "bmV3", "b": "Yg=="} and created.string_data is None and created.type == "Opaque"
    with pytest.raises(ApiException) as raised:
        kube.core.create_namespaced_secret(NS, {"metadata": {"name": "bad"}, "data": {"a": "not base64!"}})
    assert raised.value.status == 400


def test_defaulting_runs_on_updates_too(kube: Clients) -> None:
    """Real: defaulting applies to every write, so a PUT without spec.replicas stores replicas=1."""
    kube.apps.create_namespaced_deployment(NS, deployment(replicas=3))
    replaced = kube.apps.replace_namespaced_deployment("podinfo", NS, deployment(replicas=None))
    patched = kube.apps.patch_namespaced_deployment("podinfo", NS, [{"op": "remove", "path": "/spec/replicas"}])
    assert (replaced.spec.replicas, patched.spec.replicas) == (1, 1)


def test_body_of_another_api_version_or_kind_is_400(kube: Clients) -> None:
    """Real: `the API version in the data (...) does not match the expected API version (...)`."""
    args = ("networking.istio.io", "v1", NS, "virtualservices")
    with pytest.raises(ApiException) as raised:
        kube.custom.create_namespaced_custom_object(*args, virtual_service(api_version="networking.istio.io/v1beta1"))
    assert raised.value.status == 400
    assert "does not match the expected API version" in status_of(raised.value)["message"]  # type: ignore[operator]
    with pytest.raises(ApiException) as wrong_kind:
        kube.core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
    assert wrong_kind.value.status == 400
