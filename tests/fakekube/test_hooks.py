"""Test hooks: the simulated Kubelet, fault injection, the request log, direct store access, kubeconfig, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.kubelet import Kubelet
from tests.fakekube.samples import deployment

NS = "test"


def condition(obj: client.V1Deployment, kind: str) -> client.V1DeploymentCondition:
    return next(c for c in obj.status.conditions if c.type == kind)


def test_kubelet_ready_mode_mirrors_a_finished_rollout(kube: Clients) -> None:
    """What Flagger's readiness check reads: observedGeneration, replica counters, Available/Progressing."""
    kube.apps.create_namespaced_deployment(NS, deployment(replicas=3))
    kube.apps.patch_namespaced_deployment("podinfo", NS, {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}})
    read = kube.apps.read_namespaced_deployment("podinfo", NS)
    status = read.status
    assert status.observed_generation == read.metadata.generation == 2
    assert (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas) == (3, 3, 3, 3)
    assert status.unavailable_replicas is None
    assert (condition(read, "Available").status, condition(read, "Progressing").reason) == (
        "True",
        "NewReplicaSetAvailable",
    )


def test_kubelet_stuck_and_deadline_modes(kube: Clients, fake_kube: FakeKube) -> None:
    """stuck: updated below desired, Progressing=True ReplicaSetUpdated; deadline: Progressing=False."""
    assert fake_kube.kubelet is not None
    kube.apps.create_namespaced_deployment(NS, deployment(replicas=2))
    fake_kube.kubelet.set_mode(NS, "podinfo", "stuck")
    stuck = kube.apps.read_namespaced_deployment("podinfo", NS)
    assert (stuck.status.updated_replicas, stuck.status.available_replicas, stuck.status.unavailable_replicas) == (
        1,
        1,
        1,
    )
    assert condition(stuck, "Progressing").reason == "ReplicaSetUpdated"
    assert stuck.status.observed_generation == stuck.metadata.generation
    fake_kube.kubelet.set_mode(NS, "podinfo", "progress-deadline-exceeded")
    failed = kube.apps.read_namespaced_deployment("podinfo", NS)
    progressing = condition(failed, "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    fake_kube.kubelet.set_mode(NS, "podinfo", "ready")
    assert kube.apps.read_namespaced_deployment("podinfo", NS).status.updated_replicas == 2


def test_kubelet_status_writes_are_watch_events(kube: Clients) -> None:
    """Like a real controller's UpdateStatus: a MODIFIED event with a new resourceVersion follows each spec write."""
    start = kube.apps.list_namespaced_deployment(NS).metadata.resource_version
    kube.apps.create_namespaced_deployment(NS, deployment())
    watcher = watch.Watch()
    events = []
    for event in watcher.stream(kube.apps.list_namespaced_deployment, NS, resource_version=start, timeout_seconds=5):
        events.append((event["type"], event["object"].status.ready_replicas))
        if len(events) == 2:
            watcher.stop()
    assert events == [("ADDED", None), ("MODIFIED", 2)]


def test_kubelet_daemonset_and_default_mode(fake_kube: FakeKube, kube: Clients) -> None:
    """DaemonSets get desired/updated/available counters; a new default mode applies to later writes."""
    assert fake_kube.kubelet is not None
    fake_kube.kubelet.set_default_mode("stuck")
    body = deployment("agent")
    body["kind"] = "DaemonSet"
    del body["spec"]["replicas"]
    kube.apps.create_namespaced_daemon_set(NS, body)
    status = kube.apps.read_namespaced_daemon_set("agent", NS).status
    assert (status.desired_number_scheduled, status.updated_number_scheduled, status.number_unavailable) == (1, None, 1)
    fake_kube.kubelet.set_mode(NS, "agent", "ready")
    status = kube.apps.read_namespaced_daemon_set("agent", NS).status
    assert (status.number_available, status.updated_number_scheduled, status.number_unavailable) == (1, 1, None)


def test_without_kubelet_status_stays_empty(fake_kube_server: FakeKube, kube: Clients) -> None:
    """With no simulated controller nothing fills the status (as with a stopped controller-manager)."""
    fake_kube_server.store.hooks.clear()
    created = kube.apps.create_namespaced_deployment(NS, deployment())
    assert kube.apps.read_namespaced_deployment("podinfo", NS).status.ready_replicas is None
    assert created.status.observed_generation is None


def test_inject_fault_answers_n_times_then_recovers(kube: Clients, fake_kube: FakeKube) -> None:
    """Faults match method + path regex and count down; the error is a Status with the chosen reason."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    fake_kube.inject_fault("PUT", r"/deployments/podinfo$", status=409, reason="Conflict", times=2)
    current = kube.apps.read_namespaced_deployment("podinfo", NS)
    for _ in range(2):
        with pytest.raises(ApiException) as raised:
            kube.apps.replace_namespaced_deployment("podinfo", NS, current)
        assert raised.value.status == 409 and json.loads(raised.value.body)["reason"] == "Conflict"
    kube.apps.replace_namespaced_deployment("podinfo", NS, current)
    assert kube.apps.read_namespaced_deployment("podinfo", NS).metadata.name == "podinfo"


def test_inject_latency_only(kube: Clients, fake_kube: FakeKube) -> None:
    """A status below 400 only delays the matching request."""
    fake_kube.inject_fault("GET", r"/configmaps$", status=200, delay_seconds=0.3)
    started = time.monotonic()
    kube.core.list_namespaced_config_map(NS)
    assert time.monotonic() - started >= 0.3


def test_request_log_records_method_path_query_content_type_status(kube: Clients, fake_kube: FakeKube) -> None:
    fake_kube.requests.clear()
    kube.apps.create_namespaced_deployment(NS, deployment())
    kube.apps.list_namespaced_deployment(NS, label_selector="app=podinfo")
    with pytest.raises(ApiException):
        kube.apps.read_namespaced_deployment("absent", NS)
    create, listing, missing = fake_kube.requests
    assert (create.method, create.path, create.status) == ("POST", "/apis/apps/v1/namespaces/test/deployments", 201)
    assert create.body["metadata"]["name"] == "podinfo" and create.content_type == "application/json"
    assert listing.query == {"labelSelector": "app=podinfo"}
    assert (missing.method, missing.status) == ("GET", 404)


def test_seed_get_list_and_reset(fake_kube_server: FakeKube) -> None:
    """seed stores with server metadata (keeping a given status); get/list read directly; reset clears all."""
    seeded = fake_kube_server.seed({**deployment(), "status": {"readyReplicas": 1}})
    assert seeded["metadata"]["uid"] and seeded["metadata"]["namespace"] == "default"
    assert fake_kube_server.get("apps/v1", "Deployment", "podinfo")["status"] == {"readyReplicas": 1}  # type: ignore[index]
    fake_kube_server.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "fresh"}})
    assert [c["metadata"]["name"] for c in fake_kube_server.list("v1", "ConfigMap", "fresh")] == ["c"]
    fake_kube_server.reset()
    assert fake_kube_server.get("apps/v1", "Deployment", "podinfo") is None
    assert sorted(n["metadata"]["name"] for n in fake_kube_server.list("v1", "Namespace")) == ["default", "kube-system"]
    with pytest.raises(ValueError):
        fake_kube_server.get("networking.istio.io/v1", "VirtualService", "x")  # CRDs are gone too


def test_kubeconfig_loads_with_the_client(fake_kube: FakeKube, tmp_path: Path) -> None:
    path = fake_kube.write_kubeconfig(tmp_path / "config", context="ctx", namespace="test")
    api = config.new_client_from_config(config_file=str(path), context="ctx")
    assert [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items] == ["default", "kube-system", "test"]


def test_fixture_crds_cover_every_set(fake_kube: FakeKube) -> None:
    """The ready-made CRDs: Istio, SMI, Gateway API, KEDA, Keptn, Flagger's and ours."""
    crds = {c["metadata"]["name"] for c in fake_kube.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")}
    assert {
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "trafficsplits.split.smi-spec.io",
        "httproutes.gateway.networking.k8s.io",
        "scaledobjects.keda.sh",
        "keptnmetrics.metrics.keptn.sh",
        "analyses.metrics.keptn.sh",
        "canaries.flagger.app",
        "canaries.canaryflow.dev",
        "metrictemplates.canaryflow.dev",
        "alertproviders.canaryflow.dev",
    } <= crds
    for api_version in (
        "split.smi-spec.io/v1alpha1",
        "split.smi-spec.io/v1alpha3",
        "gateway.networking.k8s.io/v1beta1",
    ):
        assert fake_kube.resource_type(api_version, "TrafficSplit" if "smi" in api_version else "HTTPRoute")
    assert fake_kube.resource_type("canaryflow.dev/v1beta1", "Canary").has_status


def test_cli_prints_the_url_and_serves() -> None:
    """`python -m tests.fakekube --port 0` prints its URL on the first line, for black-box tests."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakekube", "--port", "0", "--fixture-crds"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        api = client.ApiClient(client.Configuration(host=url))
        assert (
            client.CustomObjectsApi(api).list_namespaced_custom_object("flagger.app", "v1beta1", "default", "canaries")[
                "items"
            ]
            == []
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_kubelet_rejects_unknown_modes(fake_kube: FakeKube) -> None:
    with pytest.raises(ValueError):
        Kubelet(fake_kube, "sleepy")  # type: ignore[arg-type]


def test_seed_upserts_and_register_crd_replaces(fake_kube: FakeKube) -> None:
    """seed twice = replace (new resourceVersion, same uid); register_crd of a known name updates its versions."""
    first = fake_kube.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})
    second = fake_kube.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}})
    assert second["metadata"]["uid"] == first["metadata"]["uid"] and second["data"] == {"a": "2"}
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    crd = fake_kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "trafficsplits.split.smi-spec.io")
    assert crd is not None
    crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha3"]
    fake_kube.register_crd(crd)
    with pytest.raises(ValueError):
        fake_kube.resource_type("split.smi-spec.io/v1alpha1", "TrafficSplit")
    assert fake_kube.resource_type("split.smi-spec.io/v1alpha3", "TrafficSplit").kind == "TrafficSplit"
