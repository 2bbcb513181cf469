"""The controller, a worker with the Kubernetes providers and the status sink, against fakekube and a Temporal dev
server: what a user sees with `kubectl get canary` and `kubectl get events` from creation to promotion."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from canaryflow.settings import Settings
from tests.kube.kube_helpers import CANARYFLOW_API_VERSION, podinfo_canary
from tests.kube.release_worker import IMAGE_V2, kube_worker, podinfo_deployment
from workers.controller import CanaryController, ControllerOptions
from workflows.release import CanaryRelease

API_VERSION = CANARYFLOW_API_VERSION


def canary(namespace: str, **analysis: Any) -> dict[str, Any]:
    return podinfo_canary(namespace, {"interval": "1s", "threshold": 2, "iterations": 2, **analysis})


@pytest.fixture
def namespace() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings() -> Settings:
    return Settings(task_queue=f"test-{uuid.uuid4()}", min_interval_seconds=0)


@asynccontextmanager
async def worker_and_controller(
    fake_kube: Any, env: WorkflowEnvironment, settings: Settings, namespace: str
) -> AsyncIterator[CanaryController]:
    """A worker with the Kubernetes providers and status sink, and a controller watching `namespace`."""
    controller = CanaryController(
        fake_kube.api_client(), env.client, settings, ControllerOptions(namespace=namespace, resync_seconds=2)
    )
    async with kube_worker(fake_kube, env, settings, status_sink=True, poll_seconds=0.1):
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop))
        try:
            yield controller
        finally:
            stop.set()
            await task


async def wait_for_status(
    fake_kube: Any, namespace: str, wanted: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = fake_kube.get(API_VERSION, "Canary", "podinfo", namespace)
        status = (obj or {}).get("status") or {}
        if wanted(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"Canary status never matched; last: {status}")


async def analyse_a_new_image(fake_kube: Any, namespace: str, body: dict[str, Any]) -> None:
    """Create the Canary `body`, wait for its first release to report, then deploy IMAGE_V2 and wait until its
    analysis is Progressing."""
    fake_kube.seed(body)
    first = (await wait_for_status(fake_kube, namespace, lambda s: bool(s.get("lastAppliedSpec"))))["lastAppliedSpec"]
    fake_kube.seed(podinfo_deployment(namespace, IMAGE_V2))
    await wait_for_status(
        fake_kube, namespace, lambda s: s.get("phase") == "Progressing" and s.get("lastAppliedSpec") != first
    )


def event_messages(fake_kube: Any, namespace: str) -> list[str]:
    events = [e for e in fake_kube.list("v1", "Event", namespace) if e["involvedObject"]["kind"] == "Canary"]
    return [e["message"] for e in sorted(events, key=lambda e: (e["firstTimestamp"], e["metadata"]["name"]))]


async def completed_runs(env: WorkflowEnvironment, workflow_id: str, *, expected: int) -> list[Any]:
    """Every run of `workflow_id` once visibility shows `expected` of them COMPLETED (it may lag the result)."""
    deadline = time.monotonic() + 15
    while True:
        runs = [e async for e in env.client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        done = [run for run in runs if run.status == WorkflowExecutionStatus.COMPLETED]
        if len(done) >= expected or time.monotonic() > deadline:
            assert len(done) == len(runs), [run.status for run in runs]
            return runs
        await asyncio.sleep(0.2)


async def test_new_canary_is_initialized_then_a_new_image_is_promoted(
    fake_kube: Any, dev_env: WorkflowEnvironment, settings: Settings, namespace: str
) -> None:
    fake_kube.seed(podinfo_deployment(namespace))
    async with worker_and_controller(fake_kube, dev_env, settings, namespace):
        fake_kube.seed(canary(namespace))
        initialized = await wait_for_status(
            fake_kube, namespace, lambda s: s.get("phase") == "Initialized" and bool(s.get("lastPromotedSpec"))
        )
        [condition] = initialized["conditions"]
        assert (condition["type"], condition["status"]) == ("Promoted", "True")
        assert condition["message"] == "Deployment initialization completed."
        assert initialized["lastAppliedSpec"] == initialized["lastPromotedSpec"]
        assert fake_kube.get("apps/v1", "Deployment", "podinfo-primary", namespace) is not None
        first_release = dev_env.client.get_workflow_handle_for(CanaryRelease.run, f"canary/{namespace}/podinfo")
        assert (await first_release.result()).phase == "Initialized"  # Flagger's first sight: no analysis
        assert fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)["spec"]["replicas"] == 0

        body = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": IMAGE_V2}]}}}}
        k8s.AppsV1Api(fake_kube.api_client()).patch_namespaced_deployment("podinfo", namespace, body)
        first = initialized["lastAppliedSpec"]
        succeeded = await wait_for_status(
            fake_kube, namespace, lambda s: s.get("phase") == "Succeeded" and s.get("lastAppliedSpec") != first
        )
        # The final status report is written just before the run completes: wait for the run itself.
        latest = dev_env.client.get_workflow_handle_for(CanaryRelease.run, f"canary/{namespace}/podinfo")
        assert (await latest.result()).phase == "Succeeded"
        runs = await completed_runs(dev_env, f"canary/{namespace}/podinfo", expected=2)
        assert len(runs) == 2  # one release per revision: the initialization and the new image
        logged: list[str] = []
        for run in runs:
            run_handle = dev_env.client.get_workflow_handle_for(CanaryRelease.run, run.id, run_id=run.run_id)
            logged += [
                d.message for d in await run_handle.query(CanaryRelease.decisions) if d.kind in ("event", "warning")
            ]

    assert succeeded["lastAppliedSpec"] == succeeded["lastPromotedSpec"] != initialized["lastPromotedSpec"]
    assert succeeded["conditions"][0]["status"] == "True"
    assert succeeded["conditions"][0]["message"] == "Canary analysis completed successfully, promotion finished."
    assert (succeeded["canaryWeight"], succeeded["failedChecks"]) == (0, 0)
    primary = fake_kube.get("apps/v1", "Deployment", "podinfo-primary", namespace)
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2
    messages = event_messages(fake_kube, namespace)
    for expected in (
        f"Initialization done! podinfo.{namespace}",
        f"New revision detected! Scaling up podinfo.{namespace}",
        f"Promotion completed! Scaling down podinfo.{namespace}",
    ):
        assert expected in messages, "\n".join(messages)
    assert sorted(messages) == sorted(logged)  # one Kubernetes Event per event/warning decision, none twice


async def test_suspended_canary_is_not_released_until_resumed(
    fake_kube: Any, dev_env: WorkflowEnvironment, settings: Settings, namespace: str
) -> None:
    fake_kube.seed(podinfo_deployment(namespace))
    suspended = canary(namespace)
    suspended["spec"]["suspend"] = True
    async with worker_and_controller(fake_kube, dev_env, settings, namespace):
        fake_kube.seed(suspended)
        await asyncio.sleep(2.5)  # a resync included
        assert [e async for e in dev_env.client.list_workflows(f"WorkflowId = 'canary/{namespace}/podinfo'")] == []
        assert fake_kube.get("apps/v1", "Deployment", "podinfo-primary", namespace) is None
        suspended["spec"]["suspend"] = False
        fake_kube.seed(suspended)
        await wait_for_status(fake_kube, namespace, lambda s: bool(s.get("lastAppliedSpec")))  # its release reports


async def test_suspend_pauses_the_running_release_and_unsuspend_resumes_it(
    fake_kube: Any, dev_env: WorkflowEnvironment, settings: Settings, namespace: str
) -> None:
    fake_kube.seed(podinfo_deployment(namespace))
    body = canary(namespace, iterations=60)
    handle = dev_env.client.get_workflow_handle_for(CanaryRelease.run, f"canary/{namespace}/podinfo")

    async def paused_by() -> str | None:
        for _ in range(100):
            state = await handle.query(CanaryRelease.state)
            if state.paused == expect_paused:
                return state.paused_by
            await asyncio.sleep(0.1)
        raise AssertionError(f"release paused={state.paused}, expected {expect_paused}")

    async with worker_and_controller(fake_kube, dev_env, settings, namespace):
        await analyse_a_new_image(fake_kube, namespace, body)
        body["spec"]["suspend"] = True
        fake_kube.seed(body)
        expect_paused = True
        assert await paused_by() == "canaryflow-controller"
        body["spec"]["suspend"] = False
        fake_kube.seed(body)
        expect_paused = False
        assert await paused_by() == ""
        await handle.terminate("test over")


async def test_deleting_a_canary_with_revert_on_deletion_rolls_back_and_reverts_the_target(
    fake_kube: Any, dev_env: WorkflowEnvironment, settings: Settings, namespace: str
) -> None:
    fake_kube.seed(podinfo_deployment(namespace))
    body = canary(namespace, iterations=60)
    body["spec"]["revertOnDeletion"] = True
    handle = dev_env.client.get_workflow_handle_for(CanaryRelease.run, f"canary/{namespace}/podinfo")
    async with worker_and_controller(fake_kube, dev_env, settings, namespace):
        await analyse_a_new_image(fake_kube, namespace, body)
        k8s.CustomObjectsApi(fake_kube.api_client()).delete_namespaced_custom_object(
            "canaryflow.dev", "v1beta1", namespace, "canaries", "podinfo"
        )
        for _ in range(300):
            if fake_kube.get(API_VERSION, "Canary", "podinfo", namespace) is None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the Canary was never finalized")
        description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.CANCELED
    target = fake_kube.get("apps/v1", "Deployment", "podinfo", namespace)
    primary = fake_kube.get("apps/v1", "Deployment", "podinfo-primary", namespace)
    if primary is not None:  # not yet garbage-collected with its owner, the Canary
        assert target["spec"]["replicas"] == primary["spec"]["replicas"]
    assert target["spec"]["replicas"] == 2  # serving again, with the primary's replicas
    messages = event_messages(fake_kube, namespace)
    assert f"Terminating canary podinfo.{namespace}" in messages
    assert f"Terminated canary podinfo.{namespace}" in messages
