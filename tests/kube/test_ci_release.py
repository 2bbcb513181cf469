"""CI mode on a cluster: `canaryflow release -f canary.yaml --image REPO:TAG --kubeconfig PATH --wait`.

The CLI runs as a subprocess (as in a CI job) against fakekube and a Temporal dev server; the worker runs here
with the Kubernetes providers. No Canary custom resource exists: CI mode does not need one.
"""

from __future__ import annotations

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
from tests.cli.test_cli import _cli as run_cli_process
from tests.conftest import free_port
from tests.kube.kube_helpers import podinfo_canary, podinfo_variant
from tests.kube.release_worker import IMAGE_V1, IMAGE_V2, kube_worker
from workflows.model import ReleaseRequest

PROXY = {"name": "proxy", "image": "envoyproxy/envoy:v1.30.0"}


def deployment(namespace: str, name: str = "podinfo", image: str = IMAGE_V1) -> dict[str, Any]:
    return podinfo_variant(namespace, name=name, image=image, sidecar=PROXY)


def canary_doc(namespace: str, **analysis: Any) -> dict[str, Any]:
    analysis = {"interval": "1s", "threshold": 1, "iterations": 2, **analysis}
    return podinfo_canary(namespace, analysis, api_version="flagger.app/v1beta1")


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
        prepare_cluster_release(Settings(kubeconfig=kubeconfig), request_for(canary_doc(namespace)), IMAGE_V2)
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
        prepare_cluster_release(Settings(kubeconfig=kubeconfig), request_for(canary_doc(namespace)), IMAGE_V2)
    assert raised.value.code == 3


# ------------------------------------------------------------------------------------------------------------------
# End to end: the exit code a CI job gets


async def ci_release(
    fake_kube: Any, env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any]
) -> tuple[int, str, str]:
    """`canaryflow release -f <doc> --image IMAGE_V2 --wait` on fakekube (the CLI tests' runner), with a worker."""
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("CANARYFLOW_KUBECONFIG", str(kubeconfig))
    canary_file = tmp_path / "canary.yaml"
    canary_file.write_text(yaml.safe_dump(doc))
    settings = Settings(task_queue=f"test-{uuid.uuid4()}")
    async with kube_worker(fake_kube, env, settings, status_sink=True, poll_seconds=0.1):
        args = ("release", "-f", str(canary_file), "--image", IMAGE_V2, "--wait")
        return await run_cli_process(env, settings.task_queue, *args)


async def test_good_release_exits_0_and_the_primary_runs_the_new_image(
    fake_kube: Any, dev_env: WorkflowEnvironment, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kube.seed(deployment(namespace))
    code, stdout, stderr = await ci_release(fake_kube, dev_env, tmp_path, monkeypatch, canary_doc(namespace))
    assert code == 0, stdout + stderr
    assert f"container podinfod: {IMAGE_V1} -> {IMAGE_V2}" in stdout
    assert containers(fake_kube, namespace, "podinfo-primary")["podinfod"] == IMAGE_V2
    assert containers(fake_kube, namespace, "podinfo-primary")["proxy"] == "envoyproxy/envoy:v1.30.0"
    assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 0


async def test_rolled_back_release_exits_1_and_the_primary_keeps_the_old_image(
    fake_kube: Any, dev_env: WorkflowEnvironment, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kube.seed(deployment(namespace))
    failing_check = {"name": "smoke", "type": "rollout", "url": f"http://127.0.0.1:{free_port()}/"}  # refused
    doc = canary_doc(namespace, webhooks=[failing_check])
    code, stdout, stderr = await ci_release(fake_kube, dev_env, tmp_path, monkeypatch, doc)
    assert code == 1, stdout + stderr
    assert "rolled back" in stderr
    assert containers(fake_kube, namespace, "podinfo-primary")["podinfod"] == IMAGE_V1
    assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 0
