"""Discovery, CRD registration, DynamicClient and kubectl against the server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.samples import crd, deployment
from tests.fakekube.table import evaluate

KUBECTL = "/usr/bin/kubectl"
GADGET_CRD = crd(
    "example.com",
    {"kind": "Gadget", "plural": "gadgets", "shortNames": ["gd"]},
    "Cluster",
    [
        {"name": "v1alpha1", "served": True, "storage": False},
        {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}},
        {"name": "v0", "served": False, "storage": False},
    ],
)


def test_version_and_trailing_slash_paths(kube: Clients) -> None:
    """The client calls /version/ and /apis/ with a trailing slash; VersionInfo needs every field."""
    info = client.VersionApi(kube.api).get_code()
    groups = client.ApisApi(kube.api).get_api_versions()
    assert (info.major, info.minor) == ("1", "32") and info.go_version
    assert {"apps", "networking.istio.io", "flagger.app", "canaryflow.dev"} <= {g.name for g in groups.groups}


def test_resource_lists_name_subresources(kube: Clients) -> None:
    """Real: APIResourceList entries for `deployments/status` and `deployments/scale` (kind Scale, autoscaling/v1)."""
    resources = {r.name: r for r in client.AppsV1Api(kube.api).get_api_resources().resources}
    assert resources["deployments"].short_names == ["deploy"] and resources["deployments"].namespaced
    assert resources["deployments/scale"].kind == "Scale" and resources["deployments/scale"].group == "autoscaling"
    assert "watch" in resources["deployments"].verbs
    core = {r.name: r for r in kube.core.get_api_resources().resources}
    assert not core["namespaces"].namespaced and "pods/status" in core


def test_posting_a_crd_registers_routes_and_discovery(kube: Clients) -> None:
    """Real: a CRD is Established; served versions are routed (unserved are not); GA is the preferred version."""
    created = kube.extensions.create_custom_resource_definition(GADGET_CRD)
    established = {c.type: c.status for c in created.status.conditions}
    assert established["Established"] == "True" and created.status.accepted_names.kind == "Gadget"
    group = client.ApisApi(kube.api).get_api_versions()
    gadgets = next(g for g in group.groups if g.name == "example.com")
    assert gadgets.preferred_version.version == "v1"
    assert sorted(v.version for v in gadgets.versions) == ["v1", "v1alpha1"]
    body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 1}}
    assert kube.custom.create_cluster_custom_object("example.com", "v1", "gadgets", body)["metadata"]["name"] == "g"
    with pytest.raises(ApiException) as raised:
        kube.custom.list_cluster_custom_object("example.com", "v0", "gadgets")
    assert raised.value.status == 404


def test_malformed_crd_is_422(kube: Clients) -> None:
    """Real: the CRD name must be <plural>.<group>."""
    bad = {**GADGET_CRD, "metadata": {"name": "wrong.example.com"}}
    with pytest.raises(ApiException) as raised:
        kube.extensions.create_custom_resource_definition(bad)
    assert raised.value.status == 422


def test_dynamic_client_discovers_and_reads(fake_kube: FakeKube, tmp_path: Path) -> None:
    """kubernetes.dynamic.DynamicClient runs discovery (/api, /apis, group versions) and reads through it."""
    fake_kube.seed(deployment())
    dynamic = DynamicClient(fake_kube.api_client(), cache_file=str(tmp_path / "discovery.json"))
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    routes = dynamic.resources.get(api_version="networking.istio.io/v1beta1", kind="VirtualService")
    read = deployments.get(name="podinfo", namespace="default")
    assert read.status.readyReplicas == 2
    routes.create(
        body={
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "vs"},
            "spec": {},
        },
        namespace="default",
    )
    assert [item.metadata.name for item in routes.get(namespace="default").items] == ["vs"]


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")
def test_kubectl_get_scale_patch_apply(fake_kube: FakeKube, tmp_path: Path) -> None:
    """kubectl (a second, independent client) works through a generated kubeconfig."""
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="test")
    fake_kube.seed({**deployment(), "metadata": {**deployment()["metadata"], "namespace": "test"}})
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: b\n")

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            [shutil.which("kubectl") or KUBECTL, "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert kubectl("get", "deploy", "podinfo", "-o", "jsonpath={.status.readyReplicas}") == "2"
    kubectl("scale", "deploy/podinfo", "--replicas=3")
    kubectl("patch", "deploy", "podinfo", "-p", '{"spec":{"template":{"metadata":{"annotations":{"a":"b"}}}}}')
    kubectl("apply", "--validate=false", "-f", str(manifest))
    kubectl("rollout", "status", "deploy/podinfo", "--timeout=5s")
    stored = fake_kube.get("apps/v1", "Deployment", "podinfo", "test")
    assert stored is not None and stored["spec"]["replicas"] == 3
    assert stored["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert [c["metadata"]["name"] for c in fake_kube.list("v1", "ConfigMap", "test")] == ["cfg"]
    assert "podinfo" in kubectl("get", "vs,deploy", "-o", "name")


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")
def test_kubectl_get_prints_crd_printer_columns(fake_kube: FakeKube, tmp_path: Path) -> None:
    """Real: kubectl asks for a Table; CRDs render their additionalPrinterColumns (priority 1 only with -o wide)."""
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig", namespace="test")
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
    }
    fake_kube.seed(
        {**canary, "spec": {"analysis": {"interval": "1m"}}, "status": {"phase": "Progressing", "canaryWeight": 10}}
    )
    command = [shutil.which("kubectl") or KUBECTL, "--kubeconfig", str(kubeconfig), "get", "canaries.flagger.app"]
    normal = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout.split()
    wide = subprocess.run(
        [*command, "-o", "wide"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert normal == ["NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME", "podinfo", "Progressing", "10"]
    assert "INTERVAL" in wide and "1m" in wide


def test_table_jsonpath_subset() -> None:
    """The JSONPath forms printer columns use, including condition filters."""
    obj = {
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Active", "status": "False"}]},
        "spec": {"hosts": ["a", "b"]},
    }
    assert evaluate(obj, '.status.conditions[?(@.type=="Active")].status') == ["False"]
    assert evaluate(obj, ".spec.hosts[*]") == ["a", "b"]
    assert evaluate(obj, ".spec.hosts[1]") == ["b"]
    assert evaluate(obj, ".spec.missing") == []
