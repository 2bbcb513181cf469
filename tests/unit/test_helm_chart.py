"""The Helm chart: lints, renders what a cluster needs, grants exactly the RBAC canaryflow uses, keeps secrets out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from canaryflow.cli import app as cli_app
from canaryflow.settings import Settings

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "canaryflow"
VENV_HELM = REPO_ROOT / ".venv" / "bin" / "helm"
HELM = str(VENV_HELM) if VENV_HELM.exists() else shutil.which("helm")

if HELM is None:
    pytest.skip("helm is not installed", allow_module_level=True)

FULL = ["get", "list", "watch", "create", "update", "patch", "delete"]
EXPECTED_CLUSTER_RULES = [
    {
        "apiGroups": ["canaryflow.dev", "flagger.app"],
        "resources": ["canaries", "metrictemplates", "alertproviders"],
        "verbs": ["get", "list", "watch", "update", "patch"],
    },
    {
        "apiGroups": ["canaryflow.dev", "flagger.app"],
        "resources": ["canaries/status", "canaries/finalizers"],
        "verbs": ["get", "update", "patch"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": FULL},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "update", "patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": FULL},
    {
        "apiGroups": [""],
        "resources": ["configmaps", "secrets"],
        "verbs": ["get", "list", "watch", "create", "update", "patch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": FULL},
    {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": FULL},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": FULL},
    {"apiGroups": ["networking.istio.io"], "resources": ["virtualservices", "destinationrules"], "verbs": FULL},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": FULL},
    {"apiGroups": ["split.smi-spec.io"], "resources": ["trafficsplits"], "verbs": FULL},
]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False)


def render(*values: str, include_crds: bool = False) -> list[dict[str, Any]]:
    flags = [flag for value in values for flag in ("--set", value)]
    extra = ["--include-crds"] if include_crds else []
    result = helm("template", "cf", str(CHART), "--namespace", "canaryflow", *extra, *flags)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def container(documents: list[dict[str, Any]], component: str) -> dict[str, Any]:
    deployment = next(
        d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == f"cf-canaryflow-{component}"
    )
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(documents: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return {item["name"]: item for item in container(documents, component).get("env", [])}


def test_chart_lints_strictly() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_render_has_worker_controller_account_rbac_and_metrics_service() -> None:
    documents = render()
    assert sorted((d["kind"], d["metadata"]["name"]) for d in documents) == [
        ("ClusterRole", "cf-canaryflow"),
        ("ClusterRoleBinding", "cf-canaryflow"),
        ("Deployment", "cf-canaryflow-controller"),
        ("Deployment", "cf-canaryflow-worker"),
        ("Role", "cf-canaryflow-leader-election"),
        ("RoleBinding", "cf-canaryflow-leader-election"),
        ("Service", "cf-canaryflow-worker-metrics"),
        ("ServiceAccount", "cf-canaryflow"),
    ]
    assert container(documents, "worker")["args"] == ["worker"]
    assert container(documents, "controller")["args"] == ["controller", "--resync=30"]
    assert container(documents, "worker")["image"] == "ghcr.io/canaryflow/canaryflow:0.1.0"
    for deployment in by_kind(documents, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "cf-canaryflow"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def parsed_cli_parameters(args: list[str]) -> dict[str, Any]:
    """The parameters `canaryflow <args>` would run with, parsed by the real CLI without running it."""
    group = typer.main.get_command(cli_app)
    command = group.commands[args[0]]  # type: ignore[attr-defined]
    return dict(command.make_context(args[0], list(args[1:])).params)


def test_container_args_are_accepted_by_the_canaryflow_cli() -> None:
    documents = render("controller.namespace=apps", "controller.watchFlaggerGroup=true", "controller.resyncSeconds=45")
    controller_args = container(documents, "controller")["args"]
    assert controller_args == ["controller", "--namespace=apps", "--watch-flagger-group", "--resync=45"]
    params = parsed_cli_parameters(controller_args)
    assert (params["namespace"], params["watch_flagger_group"], params["resync"]) == ("apps", True, 45.0)
    assert parsed_cli_parameters(container(documents, "worker")["args"]) == {}


def test_cluster_role_grants_exactly_the_resources_canaryflow_touches() -> None:
    documents = render()
    (role,) = by_kind(documents, "ClusterRole")
    assert role["rules"] == EXPECTED_CLUSTER_RULES
    (lease_role,) = by_kind(documents, "Role")
    assert lease_role["metadata"].get("namespace", "canaryflow") == "canaryflow"
    assert lease_role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"],
        }
    ]
    (binding,) = by_kind(documents, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cf-canaryflow", "namespace": "canaryflow"}]


def test_rbac_and_service_account_can_be_left_to_the_cluster_admin() -> None:
    documents = render("rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=ops-managed")
    assert not by_kind(documents, "ClusterRole") and not by_kind(documents, "ServiceAccount")
    for deployment in by_kind(documents, "Deployment"):
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops-managed"


def test_api_key_comes_from_a_secret_key_ref_only() -> None:
    documents = render("temporal.apiKey.existingSecret=temporal-cloud", "temporal.apiKey.key=token")
    for component in ("worker", "controller"):
        api_key = env_of(documents, component)["TEMPORAL_API_KEY"]
        assert api_key == {
            "name": "TEMPORAL_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "temporal-cloud", "key": "token"}},
        }
    assert not by_kind(documents, "Secret")
    assert "TEMPORAL_API_KEY" not in env_of(render(), "worker")


def test_values_schema_rejects_a_literal_api_key_and_bad_types() -> None:
    literal = helm("template", "cf", str(CHART), "--set", "temporal.apiKey.value=abc123")
    assert literal.returncode != 0
    assert "temporal.apiKey: Additional property value is not allowed" in literal.stderr
    assert "abc123" not in literal.stdout

    bad_replicas = helm("template", "cf", str(CHART), "--set", "worker.replicas=two")
    assert bad_replicas.returncode != 0
    assert "worker.replicas: Invalid type. Expected: integer, given: string" in bad_replicas.stderr

    bad_address = helm("template", "cf", str(CHART), "--set", "temporal.address=http://temporal:7233")
    assert bad_address.returncode != 0
    assert "temporal.address" in bad_address.stderr


def test_tls_secret_is_mounted_and_named_in_temporal_settings() -> None:
    documents = render(
        "temporal.tls.enabled=true", "temporal.tls.existingSecret=temporal-mtls", "temporal.tls.serverName=t.example"
    )
    for component in ("worker", "controller"):
        env = {name: item.get("value") for name, item in env_of(documents, component).items()}
        assert env["TEMPORAL_TLS"] == "true"
        assert env["TEMPORAL_TLS_CLIENT_CERT_PATH"] == "/etc/canaryflow/temporal-tls/tls.crt"
        assert env["TEMPORAL_TLS_CLIENT_KEY_PATH"] == "/etc/canaryflow/temporal-tls/tls.key"
        assert env["TEMPORAL_TLS_SERVER_NAME"] == "t.example"
        assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" not in env
        mounts = {m["name"]: m for m in container(documents, component)["volumeMounts"]}
        assert mounts["temporal-tls"] == {
            "name": "temporal-tls",
            "mountPath": "/etc/canaryflow/temporal-tls",
            "readOnly": True,
        }
    with_ca = render(
        "temporal.tls.existingSecret=temporal-ca", "temporal.tls.serverCA=true", "temporal.tls.clientCert=false"
    )
    env = {name: item.get("value") for name, item in env_of(with_ca, "worker").items()}
    assert env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] == "/etc/canaryflow/temporal-tls/ca.crt"
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" not in env
    deployment = by_kind(documents, "Deployment")[0]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["temporal-tls"]["secret"] == {"secretName": "temporal-mtls"}


def test_worker_environment_is_read_by_canaryflow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = render(
        "temporal.address=temporal.example:7233",
        "temporal.namespace=prod",
        "taskQueue=releases",
        "clusterName=eu-1",
        "logLevel=DEBUG",
        "worker.maxConcurrentActivities=20",
        r"includeLabelPrefix=app.kubernetes.io\,team",
        "meshProvider=gatewayapi:v1beta1",
        "eventWebhook=secret:events/url",
    )
    env = env_of(documents, "worker")
    for name in env:
        if name.startswith("CANARYFLOW_"):
            assert name.removeprefix("CANARYFLOW_").lower() in Settings.model_fields, name
    for name, item in env.items():
        monkeypatch.setenv(name, item["value"])
    settings = Settings()
    assert settings.temporal_address == "temporal.example:7233"
    assert settings.temporal_namespace == "prod"
    assert settings.task_queue == "releases"
    assert settings.cluster_name == "eu-1"
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.include_label_prefix == "app.kubernetes.io,team"
    assert settings.mesh_provider == "gatewayapi:v1beta1"
    assert settings.event_webhook == "secret:events/url"
    assert settings.max_concurrent_activities == 20
    assert settings.worker_metrics_bind == "0.0.0.0:9466"
    assert settings.kubernetes == "on"
    assert str(settings.state_dir) == "/var/run/canaryflow"
    assert container(documents, "worker")["ports"] == [{"name": "metrics", "containerPort": 9466, "protocol": "TCP"}]


def test_scheduling_values_reach_both_pods() -> None:
    documents = render(
        "nodeSelector.pool=system",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "worker.resources.requests.cpu=250m",
        "image.tag=dev",
    )
    for deployment in by_kind(documents, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"pool": "system"}
        assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
        assert pod["containers"][0]["image"] == "ghcr.io/canaryflow/canaryflow:dev"
    assert container(documents, "worker")["resources"]["requests"]["cpu"] == "250m"


def test_service_monitor_scrapes_the_worker_metrics_service() -> None:
    documents = render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=kube-prometheus")
    (monitor,) = by_kind(documents, "ServiceMonitor")
    (service,) = by_kind(documents, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert not by_kind(render("serviceMonitor.enabled=true", "worker.metrics.port=0"), "ServiceMonitor")


def test_crds_ship_in_the_chart_and_match_deploy_crds() -> None:
    chart_crds = sorted(path.name for path in (CHART / "crds").glob("*.yaml"))
    deploy_crds = (REPO_ROOT / "deploy" / "crds").glob("*.yaml")
    assert chart_crds == sorted(path.name for path in deploy_crds if path.name != "kustomization.yaml")
    for name in chart_crds:
        assert (CHART / "crds" / name).read_bytes() == (REPO_ROOT / "deploy" / "crds" / name).read_bytes()
    compat = REPO_ROOT / "deploy" / "crds" / "flagger-compat"
    compat_files = sorted(compat.glob("*.flagger.app.yaml"))
    assert [path.name for path in compat_files] == sorted(
        p.name for p in (CHART / "files" / "flagger-compat").iterdir()
    )
    for path in compat_files:
        assert (CHART / "files" / "flagger-compat" / path.name).read_bytes() == path.read_bytes()

    installed = by_kind(render(include_crds=True), "CustomResourceDefinition")
    assert sorted(crd["metadata"]["name"] for crd in installed) == [
        "alertproviders.canaryflow.dev",
        "canaries.canaryflow.dev",
        "metrictemplates.canaryflow.dev",
    ]
    compat_crds = by_kind(render("crds.flaggerCompat=true"), "CustomResourceDefinition")
    assert sorted(crd["metadata"]["name"] for crd in compat_crds) == [
        "alertproviders.flagger.app",
        "canaries.flagger.app",
        "metrictemplates.flagger.app",
    ]
