"""The worker: runs workflows until stopped, drains in-flight activities, exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from canaryflow.settings import Settings
from tests.conftest import free_port
from workers.worker import run_worker

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).parents[2]  # no resolve(): the workflow sandbox re-imports this module

activity_started = asyncio.Event()
finished_activities: list[str] = []


@activity.defn
async def slow_greeting(name: str) -> str:
    activity_started.set()
    await activity.wait_for_worker_shutdown()
    await asyncio.sleep(0.3)  # still working after the shutdown began
    finished_activities.append(name)
    return f"hello {name}"


@activity.defn
def sync_greeting(name: str) -> str:
    return f"hi {name}"


@workflow.defn
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(sync_greeting, name, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class SlowGreet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(slow_greeting, name, start_to_close_timeout=timedelta(seconds=30))


def worker_settings(env: WorkflowEnvironment, **overrides: object) -> Settings:
    return Settings.model_validate(
        {
            "temporal_address": env.client.service_client.config.target_host,
            "task_queue": f"test-{uuid.uuid4()}",
            "graceful_shutdown_seconds": 5,
            **overrides,
        }
    )


@asynccontextmanager
async def running_worker(
    settings: Settings, workflows: Sequence[type], activities: Sequence[Callable[..., Any]]
) -> AsyncIterator[None]:
    """`run_worker` in this process; leaving the block sets its stop event and waits for it to return."""
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(settings, ready=ready, stop=stop, workflows=workflows, activities=activities))
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait([ready_wait, task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        ready_wait.cancel()
        stop.set()
        await task  # raises why the worker could not start
        raise AssertionError("the worker did not become ready within 15s")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def has_workflow_pollers(client: Client, task_queue: str) -> bool:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers) > 0


async def test_run_worker_executes_workflows_with_sync_activities_and_serves_sdk_metrics(
    dev_env: WorkflowEnvironment,
) -> None:
    metrics_bind = f"127.0.0.1:{free_port()}"
    settings = worker_settings(
        dev_env,
        worker_metrics_bind=metrics_bind,
        max_concurrent_activities=7,
        max_concurrent_workflow_tasks=9,
    )

    async with running_worker(settings, workflows=[Greet], activities=[sync_greeting]):
        result = await dev_env.client.execute_workflow(
            Greet.run, "canary", id=f"greet-{uuid.uuid4()}", task_queue=settings.task_queue
        )
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://{metrics_bind}/metrics")).text

    assert result == "hi canary"
    # Slot counts come from the settings, so the endpoint proves both the metrics wiring and the limits.
    assert free_slots(metrics, settings.task_queue) == {"ActivityWorker": 7, "WorkflowWorker": 9}


def free_slots(metrics: str, task_queue: str) -> dict[str, int]:
    pattern = (
        r'^temporal_worker_task_slots_available\{[^}]*task_queue="' + re.escape(task_queue) + r'"'
        r',worker_type="(ActivityWorker|WorkflowWorker)"\} (\d+)$'
    )
    return {kind: int(count) for kind, count in re.findall(pattern, metrics, flags=re.MULTILINE)}


async def test_stop_lets_an_in_flight_activity_finish_within_the_graceful_timeout(
    dev_env: WorkflowEnvironment,
) -> None:
    settings = worker_settings(dev_env)
    activity_started.clear()
    workflow_id = f"slow-{uuid.uuid4()}"

    async with running_worker(settings, workflows=[SlowGreet], activities=[slow_greeting]):
        handle = await dev_env.client.start_workflow(
            SlowGreet.run, "primary", id=workflow_id, task_queue=settings.task_queue
        )
        await asyncio.wait_for(activity_started.wait(), timeout=10)
        stop_requested_at = time.monotonic()
    stopped_after = time.monotonic() - stop_requested_at

    assert finished_activities == ["primary"]
    assert stopped_after < settings.graceful_shutdown_seconds
    history = await handle.fetch_history()
    assert any(event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for event in history.events)


def worker_env(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TEMPORAL_", "CANARYFLOW_"))}
    return {**env, **variables}


async def test_worker_process_exits_0_on_sigterm_and_serves_metrics_meanwhile(
    dev_env: WorkflowEnvironment,
) -> None:
    task_queue = f"test-{uuid.uuid4()}"
    metrics_bind = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.worker"],
        cwd=PROJECT_ROOT,
        env=worker_env(
            TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
            CANARYFLOW_TASK_QUEUE=task_queue,
            CANARYFLOW_GRACEFUL_SHUTDOWN_SECONDS="5",
            CANARYFLOW_WORKER_METRICS_BIND=metrics_bind,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not await has_workflow_pollers(dev_env.client, task_queue):
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the worker never polled its task queue"
            await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as http:
            assert "temporal_" in (await http.get(f"http://{metrics_bind}/metrics")).text

        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(process.wait, timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = process.stdout.read().decode() if process.stdout else ""
    assert exit_code == 0, output
    assert "worker stopped" in output


async def test_worker_process_exits_3_with_one_line_when_temporal_is_unreachable() -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.worker"],
        cwd=PROJECT_ROOT,
        env=worker_env(TEMPORAL_ADDRESS=unreachable),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert completed.returncode == 3
    assert completed.stderr.strip().splitlines() == [
        f"canaryflow worker: cannot reach Temporal at {unreachable}: Connection refused"
    ]
