"""The controller turns Canary resources and target changes into releases (Temporal dev server + fakekube).

These tests need no worker: what the controller does is visible as workflow executions (their input and search
attributes) and as objects on the API server.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.kube.revision import workload_revision
from canaryflow import shared
from canaryflow.loader import parse_resource
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from tests.kube.kube_helpers import podinfo_canary, podinfo_variant
from tests.kube.release_worker import IMAGE_V1, IMAGE_V2
from workers.controller import FINALIZER, CanaryController, CanaryKey, ControllerOptions

GROUP = "canaryflow.dev"
API_VERSION = f"{GROUP}/v1beta1"


ANALYSIS = {
    "interval": "10s",
    "threshold": 2,
    "maxWeight": 20,
    "stepWeight": 10,
    "metrics": [{"name": "errors", "templateRef": {"name": "errors"}, "thresholdRange": {"max": 1}}],
    "alerts": [{"name": "on-call", "severity": "error", "providerRef": {"name": "on-call"}}],
}
SIDECAR = {"name": "sidecar", "image": "busybox:1.36"}
WEBHOOK_ADDRESS = "https://hooks.slack.com/services/T000/B000/secret-token"


def deployment(namespace: str, image: str = IMAGE_V1, replicas: int = 2) -> dict[str, Any]:
    return podinfo_variant(namespace, image=image, replicas=replicas, sidecar=SIDECAR)


def canary(namespace: str, **spec: Any) -> dict[str, Any]:
    return podinfo_canary(namespace, copy.deepcopy(ANALYSIS), **spec)


def metric_template(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MetricTemplate",
        "metadata": {"name": "errors", "namespace": namespace},
        "spec": {"provider": {"type": "prometheus", "address": "http://prometheus:9090"}, "query": "vector(0)"},
    }


def alert_provider(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",  # found in the other group: a half-migrated namespace
        "kind": "AlertProvider",
        "metadata": {"name": "on-call", "namespace": namespace},
        "spec": {"type": "slack", "channel": "on-call", "secretRef": {"name": "on-call-webhook"}},
    }


def webhook_secret(namespace: str) -> dict[str, Any]:
    """The AlertProvider's Secret: only its name may travel with the release."""
    address = base64.b64encode(WEBHOOK_ADDRESS.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "on-call-webhook", "namespace": namespace},
        "data": {"address": address},
    }


def revision_of(fake_kube: Any, canary_obj: dict[str, Any]) -> str:
    model = parse_resource(copy.deepcopy(canary_obj))
    assert isinstance(model, Canary)
    return workload_revision(fake_kube.api_client(), model)


def seed_applied_canary(fake_kube: Any, namespace: str, phase: str = "Succeeded") -> tuple[dict[str, Any], str]:
    """The target, and a Canary whose status says its current revision was applied and promoted (in `phase`)."""
    fake_kube.seed(deployment(namespace))
    applied = canary(namespace)
    revision = revision_of(fake_kube, applied)
    applied["status"] = {
        "phase": phase,
        "lastAppliedSpec": revision,
        "lastPromotedSpec": revision,
        "conditions": [{"type": "Promoted", "status": "True", "reason": phase}],
    }
    fake_kube.seed(applied)
    return applied, revision


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings() -> Settings:
    return Settings(task_queue=f"test-{uuid.uuid4()}", min_interval_seconds=0)


@pytest.fixture
async def temporal(dev_env: WorkflowEnvironment, namespace: str) -> AsyncIterator[Client]:
    yield dev_env.client
    for execution in await runs_of_now(dev_env.client, namespace):
        if execution.status == WorkflowExecutionStatus.RUNNING:
            await dev_env.client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate("test over")


def controller(fake_kube: Any, temporal: Client, settings: Settings, **options: Any) -> CanaryController:
    return CanaryController(fake_kube.api_client(), temporal, settings, ControllerOptions(**options))


async def runs_of_now(client: Client, namespace: str) -> list[Any]:
    return [e async for e in client.list_workflows(f"WorkflowId = 'canary/{namespace}/podinfo'")]


async def runs_of(client: Client, namespace: str, timeout: float = 5.0) -> list[Any]:
    """Every workflow run of the canary's release id (visibility is eventually consistent: wait for it)."""
    runs: list[Any] = []
    for _ in range(int(timeout * 10)):
        runs = await runs_of_now(client, namespace)
        if runs:
            return runs
        await asyncio.sleep(0.1)
    return runs


async def test_new_canary_starts_a_release_for_the_targets_revision(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    fake_kube.seed(deployment(namespace))
    fake_kube.seed(metric_template(namespace))
    fake_kube.seed(alert_provider(namespace))
    fake_kube.seed(webhook_secret(namespace))
    fake_kube.seed(canary(namespace))
    outcome = await controller(fake_kube, temporal, settings).reconcile(CanaryKey(GROUP, namespace, "podinfo"))
    assert outcome == "started"
    handle = temporal.get_workflow_handle(shared.release_workflow_id(namespace, "podinfo"))
    description = await handle.describe()
    expected = revision_of(fake_kube, canary(namespace))
    assert description.typed_search_attributes.get(shared.SA_REVISION) == expected
    assert description.task_queue == settings.task_queue
    # The start carries the resolved references (from both API groups), never a secret.
    history = await handle.fetch_history()
    start = history.events[0].workflow_execution_started_event_attributes
    payload = start.input.payloads[0].data.decode()
    assert f'"{namespace}/errors"' in payload and '"vector(0)"' in payload
    assert f'"{namespace}/on-call"' in payload and '"on-call-webhook"' in payload
    assert "secret-token" not in payload
    # Flagger's syncHandler: a new Canary shows Initializing before any worker ran.
    status = fake_kube.get(API_VERSION, "Canary", "podinfo", namespace)["status"]
    assert status["phase"] == "Initializing"
    assert status["conditions"][0]["reason"] == "Initializing"
    assert status["conditions"][0]["message"] == "New Deployment detected, starting initialization."


async def test_revision_already_applied_or_running_starts_nothing(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    seed_applied_canary(fake_kube, namespace)
    key = CanaryKey(GROUP, namespace, "podinfo")
    first = controller(fake_kube, temporal, settings)
    assert await first.reconcile(key) == "up-to-date"
    assert await runs_of_now(temporal, namespace) == []
    # A new image: one release; asking again (this replica or another) starts nothing more.
    fake_kube.seed(deployment(namespace, image=IMAGE_V2))
    assert await first.reconcile(key) == "started"
    assert await first.reconcile(key) == "release-has-revision"
    assert await controller(fake_kube, temporal, settings).reconcile(key) == "release-has-revision"
    assert len(await runs_of(temporal, namespace)) == 1


async def test_replica_only_changes_start_nothing(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    seed_applied_canary(fake_kube, namespace)
    fake_kube.seed(deployment(namespace, replicas=7))
    assert (
        await controller(fake_kube, temporal, settings).reconcile(CanaryKey(GROUP, namespace, "podinfo"))
        == "up-to-date"
    )


async def test_suspended_canary_starts_no_release(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    fake_kube.seed(deployment(namespace))
    fake_kube.seed(canary(namespace, suspend=True))
    outcome = await controller(fake_kube, temporal, settings).reconcile(CanaryKey(GROUP, namespace, "podinfo"))
    assert outcome == "suspended"
    assert await runs_of_now(temporal, namespace) == []
    messages = [e["message"] for e in fake_kube.list("v1", "Event", namespace)]
    assert messages == ["skipping canary run as object is suspended"]


async def test_two_controllers_watching_at_once_start_one_release(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    """Both replicas see the same new Canary through their watches and race to start its release.

    Proof of "exactly one": visibility lists every run (also closed or continued-as-new ones) of the release's
    workflow id; there is one, for the target's revision, and each controller did reconcile the Canary.
    """
    fake_kube.seed(deployment(namespace))
    stop = asyncio.Event()
    replicas = [controller(fake_kube, temporal, settings, namespace=namespace, resync_seconds=2) for _ in range(2)]
    tasks = [asyncio.create_task(replica.run(stop)) for replica in replicas]
    try:
        await asyncio.sleep(0.3)
        fake_kube.seed(canary(namespace))
        for _ in range(100):
            if all(replica.reconciled for replica in replicas) and await runs_of_now(temporal, namespace):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # one resync later: both have looked again
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    runs = await runs_of(temporal, namespace)
    assert len(runs) == 1
    assert runs[0].typed_search_attributes.get(shared.SA_REVISION) == revision_of(fake_kube, canary(namespace))
    assert all(replica.reconciled >= 2 for replica in replicas)


async def test_image_change_is_picked_up_by_the_watch(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    applied, revision = seed_applied_canary(fake_kube, namespace, "Initialized")
    stop = asyncio.Event()
    task = asyncio.create_task(
        controller(fake_kube, temporal, settings, namespace=namespace, resync_seconds=30).run(stop)
    )
    try:
        await asyncio.sleep(0.5)
        assert await runs_of_now(temporal, namespace) == []
        fake_kube.seed(deployment(namespace, image=IMAGE_V2))
        runs = await runs_of(temporal, namespace)
    finally:
        stop.set()
        await task
    assert len(runs) == 1
    new_revision = revision_of(fake_kube, applied)
    assert new_revision != revision
    assert runs[0].typed_search_attributes.get(shared.SA_REVISION) == new_revision


async def test_revert_on_deletion_adds_a_finalizer_and_reverts_on_delete(
    fake_kube: Any, temporal: Client, settings: Settings, namespace: str
) -> None:
    from kubernetes import client as k8s

    fake_kube.seed(deployment(namespace, replicas=0))  # scaled to zero by the release, as Flagger does
    fake_kube.seed(podinfo_variant(namespace, name="podinfo-primary", replicas=3, sidecar=SIDECAR))
    fake_kube.seed(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {"selector": {"app": "podinfo-primary"}, "ports": [{"port": 9898}]},
        }
    )
    fake_kube.seed(canary(namespace, revertOnDeletion=True))
    key = CanaryKey(GROUP, namespace, "podinfo")
    ctl = controller(fake_kube, temporal, settings, cancel_wait_seconds=1)  # no worker here to roll back
    assert await ctl.reconcile(key) == "started"
    assert FINALIZER in fake_kube.get(API_VERSION, "Canary", "podinfo", namespace)["metadata"]["finalizers"]
    k8s.CustomObjectsApi(fake_kube.api_client()).delete_namespaced_custom_object(
        GROUP, "v1beta1", namespace, "canaries", "podinfo"
    )
    # No worker runs the cancelled release's rollback: the revert waits for it (a later rollback would scale the
    # target to zero again), and the Canary stays until then.
    assert await ctl.reconcile(key) == "waiting-for-release"
    assert fake_kube.get(API_VERSION, "Canary", "podinfo", namespace)["metadata"]["finalizers"] == [FINALIZER]
    assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 0
    release = temporal.get_workflow_handle(shared.release_workflow_id(namespace, "podinfo"))
    history = await release.fetch_history()
    assert any(event.HasField("workflow_execution_cancel_requested_event_attributes") for event in history.events)
    await release.terminate("rolled back")  # what a worker does with the cancellation, for this test

    assert await ctl.reconcile(key) == "finalized"
    assert fake_kube.get(API_VERSION, "Canary", "podinfo", namespace) is None  # finalizer removed: deleted
    assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 3
    assert fake_kube.get("v1", "Service", "podinfo", namespace)["spec"]["selector"] == {"app": "podinfo"}
    messages = [e["message"] for e in fake_kube.list("v1", "Event", namespace)]
    assert messages.count(f"Terminating canary podinfo.{namespace}") == 1
    assert messages.count(f"Terminated canary podinfo.{namespace}") == 1


def test_controller_command_with_a_missing_kubeconfig_exits_2(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from canaryflow.cli import app

    result = CliRunner().invoke(app, ["controller", "--kubeconfig", str(tmp_path / "nope")])
    assert result.exit_code == 2, result.output
    assert "kubeconfig" in result.output and "does not exist" in result.output


async def test_controller_command_starts_releases_and_stops_on_sigterm(
    fake_kube: Any, dev_env: WorkflowEnvironment, temporal: Client, namespace: str, tmp_path: Any
) -> None:
    import os
    import signal
    import sys

    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    fake_kube.seed(deployment(namespace))
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CANARYFLOW_TASK_QUEUE": f"test-{uuid.uuid4()}",
        "CANARYFLOW_KUBECONFIG": str(kubeconfig),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "canaryflow.cli",
        "controller",
        "-n",
        namespace,
        "--resync",
        "2",
        env=variables,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        fake_kube.seed(canary(namespace))
        runs = await runs_of(temporal, namespace, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert len(runs) == 1, stderr.decode()
    assert runs[0].typed_search_attributes.get(shared.SA_REVISION) == revision_of(fake_kube, canary(namespace))
    assert process.returncode == 0, stderr.decode()
