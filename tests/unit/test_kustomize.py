"""The kustomize base renders CRDs, RBAC, worker and controller consistent with the CRD files and the Helm chart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryflow.settings import Settings

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).parents[2]
BASE = REPO_ROOT / "deploy" / "kustomize" / "base"
KUBECTL = shutil.which("kubectl")
VENV_HELM = REPO_ROOT / ".venv" / "bin" / "helm"
HELM = str(VENV_HELM) if VENV_HELM.exists() else shutil.which("helm")

if KUBECTL is None:
    pytest.skip("kubectl is not installed", allow_module_level=True)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    result = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def helm_template(template: str) -> list[dict[str, Any]]:
    """The chart's `template` rendered with default values, as the kustomize base is meant to match."""
    assert HELM is not None
    chart = REPO_ROOT / "deploy" / "helm" / "canaryflow"
    result = subprocess.run(
        [HELM, "template", "canaryflow", str(chart), "-n", "canaryflow", "--show-only", template],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(BASE)


def only(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (match,) = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return match


def test_base_renders_every_object(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered if d["kind"] != "ConfigMap")
    assert kinds == [
        ("ClusterRole", "canaryflow"),
        ("ClusterRoleBinding", "canaryflow"),
        ("CustomResourceDefinition", "alertproviders.canaryflow.dev"),
        ("CustomResourceDefinition", "canaries.canaryflow.dev"),
        ("CustomResourceDefinition", "metrictemplates.canaryflow.dev"),
        ("Deployment", "canaryflow-controller"),
        ("Deployment", "canaryflow-worker"),
        ("Namespace", "canaryflow"),
        ("Role", "canaryflow-leader-election"),
        ("RoleBinding", "canaryflow-leader-election"),
        ("Service", "canaryflow-worker-metrics"),
        ("ServiceAccount", "canaryflow"),
    ]
    for document in rendered:
        if document["kind"] not in ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert document["metadata"]["namespace"] == "canaryflow"


def test_crds_are_the_generated_ones(rendered: list[dict[str, Any]]) -> None:
    for document in rendered:
        if document["kind"] == "CustomResourceDefinition":
            checked_in = REPO_ROOT / "deploy" / "crds" / f"{document['metadata']['name']}.yaml"
            assert document["spec"] == yaml.safe_load(checked_in.read_text())["spec"]


def test_flagger_compat_crds_render_on_their_own() -> None:
    names = sorted(d["metadata"]["name"] for d in kustomize(REPO_ROOT / "deploy" / "crds" / "flagger-compat"))
    assert names == ["alertproviders.flagger.app", "canaries.flagger.app", "metrictemplates.flagger.app"]


def test_deployments_run_worker_and_controller_with_the_settings(rendered: list[dict[str, Any]]) -> None:
    settings_map = only(rendered, "ConfigMap")
    for component in ("worker", "controller"):
        pod = only(rendered, "Deployment", f"canaryflow-{component}")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][0] == component
        assert container["image"] == "ghcr.io/canaryflow/canaryflow:0.1.0"
        assert container["envFrom"] == [{"configMapRef": {"name": settings_map["metadata"]["name"]}}]
        env = {item["name"]: item for item in container["env"]}
        assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "canaryflow-temporal",
            "key": "api-key",
            "optional": True,
        }
        assert pod["serviceAccountName"] == "canaryflow"
    for name in settings_map["data"]:
        if name.startswith("CANARYFLOW_"):
            assert name.removeprefix("CANARYFLOW_").lower() in Settings.model_fields, name
    assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"} <= set(settings_map["data"])


def test_worker_metrics_service_selects_the_worker_pods(rendered: list[dict[str, Any]]) -> None:
    service = only(rendered, "Service")
    worker = only(rendered, "Deployment", "canaryflow-worker")
    assert service["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    controller = only(rendered, "Deployment", "canaryflow-controller")
    assert not service["spec"]["selector"].items() <= controller["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.skipif(HELM is None, reason="helm is not installed")
def test_rbac_matches_the_helm_chart(rendered: list[dict[str, Any]]) -> None:
    from_helm = {(d["kind"], d["metadata"]["name"]): d for d in helm_template("templates/rbac.yaml")}
    assert from_helm
    for (kind, name), document in from_helm.items():
        ours = only(rendered, kind, name)
        for key in ("rules", "roleRef", "subjects"):
            assert ours.get(key) == document.get(key), (kind, name, key)


@pytest.mark.parametrize("provider", ["gatewayapi", "istio", "linkerd", "nginx", "kubernetes"])
def test_example_renders_podinfo_and_its_canary_in_namespace_test(provider: str) -> None:
    objects = kustomize(REPO_ROOT / "deploy" / "examples" / provider)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "podinfo"), ("HorizontalPodAutoscaler", "podinfo"), ("Canary", "podinfo")} <= names
    assert {o["metadata"]["namespace"] for o in objects} == {"test"}
    canary = next(o for o in objects if o["kind"] == "Canary")
    assert canary["apiVersion"] == "canaryflow.dev/v1beta1"


@pytest.mark.skipif(HELM is None, reason="helm is not installed")
@pytest.mark.parametrize("component", ["worker", "controller"])
def test_deployment_matches_the_helm_chart_defaults(rendered: list[dict[str, Any]], component: str) -> None:
    (helm_deployment,) = helm_template(f"templates/{component}-deployment.yaml")
    helm_pod = helm_deployment["spec"]["template"]["spec"]
    ours_pod = only(rendered, "Deployment", f"canaryflow-{component}")["spec"]["template"]["spec"]
    for key in ("securityContext", "volumes", "terminationGracePeriodSeconds"):
        assert ours_pod.get(key) == helm_pod.get(key), key
    (helm_container,) = helm_pod["containers"]
    (ours_container,) = ours_pod["containers"]
    for key in ("args", "ports", "securityContext", "resources", "volumeMounts"):
        assert ours_container.get(key) == helm_container.get(key), key

    def plain(env: list[dict[str, Any]]) -> dict[str, str]:
        return {item["name"]: item["value"] for item in env if "value" in item}

    settings_map = only(rendered, "ConfigMap")["data"]
    assert {**settings_map, **plain(ours_container["env"])} == plain(helm_container["env"])
