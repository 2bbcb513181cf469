"""CI mode on a cluster: `canaryflow release -f canary.yaml --image REPO:TAG --kubeconfig PATH --wait`.

The CLI runs as a subprocess (as in a CI job) against fakekube and a Temporal dev server; the worker runs here
with the Kubernetes providers. No Canary custom resource exists: CI mode does not need one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from activities.kube.revision import workload_revision
from canaryflow.kube_release import KubeReleaseError, cluster_release, prepare_cluster_release
from canaryflow.loader import parse_resource
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from tests.conftest import free_port
from tests.kube.test_controller_e2e import kube_worker
from workflows.model import ReleaseRequest

IMAGE_V1 = "ghcr.io/stefanprodan/podinfo:6.0.0"
IMAGE_V2 = "ghcr.io/stefanprodan/podinfo:6.0.1"


def deployment(namespace: str, name: str = "podinfo", image: str = IMAGE_V1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "proxy", "image": "envoyproxy/envoy:v1.30.0"},
                        {"name": "podinfod", "image": image, "ports": [{"containerPort": 9898}]},
                    ]
                },
            },
        },
    }


def canary_doc(namespace: str, **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1s", "threshold": 1, "iterations": 2, **analysis},
        },
    }


def request_for(doc: dict[str, Any]) -> ReleaseRequest:
    canary = parse_resource(doc)
    assert isinstance(canary, Canary)
    return ReleaseRequest(canary=canary, revision="placeholder", requested_by="ci")


def containers(fake_kube: Any, namespace: str, name: str = "podinfo") -> dict[str, str]:
    obj = fake_kube.get("apps/v1", "Deployment", name, namespace)
    return {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}


@pytest.fixture
def namespace() -> str:
    return f"ci-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------------------------------------
# The revision CI starts with is the one the controller computes: never two releases for one change


def test_image_goes_on_the_container_of_that_repository_and_the_revision_is_the_controllers(
    fake_kube: Any, namespace: str
) -> None:
    fake_kube.seed(deployment(namespace))
    primary = deployment(namespace, name="podinfo-primary")
    fake_kube.seed(primary)
    request = request_for(canary_doc(namespace))
    api_client = fake_kube.api_client()
    prepared = cluster_release(api_client, request, IMAGE_V2)
    assert containers(fake_kube, namespace) == {"proxy": "envoyproxy/envoy:v1.30.0", "podinfod": IMAGE_V2}
    assert prepared.image_update is not None and prepared.image_update.applied_now
    assert (prepared.image_update.container, prepared.image_update.previous_image) == ("podinfod", IMAGE_V1)
    assert prepared.request.revision == workload_revision(api_client, request.canary)
    assert prepared.request.image == IMAGE_V2
    # Asking again for the same image changes nothing and gives the same revision.
    again = cluster_release(api_client, request, IMAGE_V2)
    assert again.image_update is None
    assert again.request.revision == prepared.request.revision


def test_first_release_leaves_the_image_to_the_release_but_starts_with_its_revision(
    fake_kube: Any, namespace: str
) -> None:
    fake_kube.seed(deployment(namespace))  # no primary yet: the release bootstraps it from the current version
    request = request_for(canary_doc(namespace))
    api_client = fake_kube.api_client()
    before = workload_revision(api_client, request.canary)
    prepared = cluster_release(api_client, request, IMAGE_V2)
    assert containers(fake_kube, namespace)["podinfod"] == IMAGE_V1
    assert prepared.image_update is not None and not prepared.image_update.applied_now
    assert prepared.request.revision != before
    fake_kube.seed(deployment(namespace, image=IMAGE_V2))  # what the release's initialize does
    assert prepared.request.revision == workload_revision(api_client, request.canary)


def test_missing_target_is_invalid_input(fake_kube: Any, namespace: str, tmp_path: Path) -> None:
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(KubeReleaseError) as raised:
        prepare_cluster_release(Settings(), request_for(canary_doc(namespace)), IMAGE_V2, kubeconfig)
    assert raised.value.code == 2
    assert f"Deployment {namespace}/podinfo not found" in str(raised.value)


def test_unreachable_cluster_exits_3(namespace: str, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    with pytest.raises(KubeReleaseError) as raised:
        prepare_cluster_release(Settings(), request_for(canary_doc(namespace)), IMAGE_V2, kubeconfig)
    assert raised.value.code == 3


# ------------------------------------------------------------------------------------------------------------------
# End to end: the exit code a CI job gets


async def run_cli(env: WorkflowEnvironment, task_queue: str, kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "CANARYFLOW_TASK_QUEUE": task_queue,
        "CANARYFLOW_MIN_INTERVAL_SECONDS": "1",
        "CANARYFLOW_KUBECONFIG": str(kubeconfig),
        "CANARYFLOW_IDENTITY": "ci-bot",
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "canaryflow.cli",
        *args,
        env=variables,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_good_release_exits_0_and_the_primary_runs_the_new_image(
    fake_kube: Any, dev_env: WorkflowEnvironment, namespace: str, tmp_path: Path
) -> None:
    fake_kube.seed(deployment(namespace))
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    canary_file = tmp_path / "canary.yaml"
    canary_file.write_text(yaml.safe_dump(canary_doc(namespace)))
    settings = Settings(task_queue=f"test-{uuid.uuid4()}")
    async with kube_worker(fake_kube, dev_env, settings):
        code, stdout, stderr = await run_cli(
            dev_env, settings.task_queue, kubeconfig, "release", "-f", str(canary_file), "--image", IMAGE_V2, "--wait"
        )
    assert code == 0, stdout + stderr
    assert f"container podinfod: {IMAGE_V1} -> {IMAGE_V2}" in stdout
    assert containers(fake_kube, namespace, "podinfo-primary")["podinfod"] == IMAGE_V2
    assert containers(fake_kube, namespace, "podinfo-primary")["proxy"] == "envoyproxy/envoy:v1.30.0"
    assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 0


async def test_rolled_back_release_exits_1_and_the_primary_keeps_the_old_image(
    fake_kube: Any, dev_env: WorkflowEnvironment, namespace: str, tmp_path: Path
) -> None:
    fake_kube.seed(deployment(namespace))
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    failing_check = {"name": "smoke", "type": "rollout", "url": f"http://127.0.0.1:{free_port()}/"}  # refused
    canary_file = tmp_path / "canary.yaml"
    canary_file.write_text(yaml.safe_dump(canary_doc(namespace, webhooks=[failing_check])))
    settings = Settings(task_queue=f"test-{uuid.uuid4()}")
    async with kube_worker(fake_kube, dev_env, settings):
        code, stdout, stderr = await run_cli(
            dev_env, settings.task_queue, kubeconfig, "release", "-f", str(canary_file), "--image", IMAGE_V2, "--wait"
        )
    assert code == 1, stdout + stderr
    assert "rolled back" in stderr
    assert containers(fake_kube, namespace, "podinfo-primary")["podinfod"] == IMAGE_V1
    assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 0
