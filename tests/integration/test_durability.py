"""A release survives its worker: SIGKILL the worker process mid-release, start another, the release finishes.

The worker is a real process (`tests.integration.recording_worker`) on the real dev server; its platform
writes every call to a file that outlives it, so the test sees exactly which side effects happened, how often.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from canaryflow.client import release_state, start_release
from canaryflow.spec import Canary
from tests.integration.recording_platform import PlatformControl, PlatformState, Record
from tests.workflow.harness import canary, request
from workflows.model import ReleaseRequest, ReleaseResult
from workflows.release import ERR_ROLLED_BACK, CanaryRelease

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).parents[2]
# Far below a step's 60 s start-to-close: a scale-down lost with its worker is retried within seconds.
HEARTBEAT_TIMEOUT_SECONDS = 2.0
RESULT_TIMEOUT_SECONDS = 60.0

Release = WorkflowHandle[CanaryRelease, ReleaseResult]


@dataclass
class WorkerProcesses:
    """Recording workers started as subprocesses, each in its own process group, its output in a log file."""

    address: str
    task_queue: str
    record_dir: Path
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, *, delays: dict[str, float] | None = None, heartbeat_timeout: float | None = None) -> int:
        """Start a worker; returns its pid."""
        log_path = self.record_dir / f"worker-{len(self.processes) + 1}.log"
        variables = {
            "TEMPORAL_ADDRESS": self.address,
            "CANARYFLOW_TASK_QUEUE": self.task_queue,
            "RECORDING_DIR": str(self.record_dir),
            "RECORDING_DELAYS": ",".join(f"{name}={seconds}" for name, seconds in (delays or {}).items()),
            "RECORDING_HEARTBEAT_TIMEOUT": "" if heartbeat_timeout is None else str(heartbeat_timeout),
        }
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CANARYFLOW_", "RECORDING_"))
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.recording_worker"],
                cwd=PROJECT_ROOT,
                env={**inherited, **variables},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches anything it spawned
            )
        self.processes.append((process, log_path))
        return process.pid

    def kill(self, pid: int) -> None:
        process = self._process(pid)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def kill_all(self) -> None:
        for process, _ in self.processes:
            self.kill(process.pid)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name} ---\n{path.read_text(errors='replace')}" for _, path in self.processes)

    def _process(self, pid: int) -> subprocess.Popen[bytes]:
        return next(process for process, _ in self.processes if process.pid == pid)


@asynccontextmanager
async def worker_processes(env: WorkflowEnvironment, record_dir: Path) -> AsyncIterator[WorkerProcesses]:
    workers = WorkerProcesses(
        address=env.client.service_client.config.target_host,
        task_queue=f"test-{uuid.uuid4()}",
        record_dir=record_dir,
    )
    try:
        yield workers
    finally:
        workers.kill_all()
        print(workers.logs())  # pytest shows captured output only when the test fails


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    timeout: float = 30.0,
    context: Callable[[], str] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting until {what}\n{context()}"
        await asyncio.sleep(0.05)


def durable_request(analysis: dict[str, Any]) -> ReleaseRequest:
    """A canary with second-long intervals (the floor lowered to 1 s) and a name of its own."""
    spec: Canary = canary(analysis)
    spec.metadata.name = f"podinfo-{uuid.uuid4().hex[:8]}"
    return request(spec, min_interval_seconds=1)


@dataclass(frozen=True)
class ScheduledActivity:
    name: str
    input: Any


async def scheduled_activities_each_completed_once(handle: Release) -> list[ScheduledActivity]:
    """Every activity the workflow scheduled, in order; asserts each completed exactly once, none failed."""
    history = await handle.fetch_history()
    scheduled: dict[int, ScheduledActivity] = {}
    completions: Counter[int] = Counter()
    unsuccessful: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            payload = json.loads(attributes.input.payloads[0].data)
            scheduled[event.event_id] = ScheduledActivity(attributes.activity_type.name, payload)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completions[event.activity_task_completed_event_attributes.scheduled_event_id] += 1
        elif event.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
            EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
        ):
            unsuccessful.append(EventType.Name(event.event_type))
    assert unsuccessful == []
    assert completions == Counter(dict.fromkeys(scheduled, 1))
    return list(scheduled.values())


def scheduled_canary_weights(activities: list[ScheduledActivity]) -> list[int]:
    return [a.input["routes"]["canary_weight"] for a in activities if a.name == c.ACT_ROUTER_SET_ROUTES]


async def status(handle: Release) -> WorkflowExecutionStatus | None:
    return (await handle.describe()).status


async def test_release_killed_between_steps_resumes_on_a_new_worker_without_repeating_a_step(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    record = Record(tmp_path)
    req = durable_request({"interval": "2s", "stepWeight": 20, "maxWeight": 60})
    async with worker_processes(dev_env, tmp_path) as workers:
        first = workers.start()
        handle = (await start_release(dev_env.client, req, task_queue=workers.task_queue)).handle

        await eventually(lambda: record.canary_weights() == [20], "the router has weight 20", context=record.dump)

        # The query answers only once the workflow has taken the write in: it now sleeps out its 2 s interval.
        async def workflow_took_weight_20() -> bool:
            return (await release_state(handle)).canary_weight == 20

        await eventually(workflow_took_weight_20, "the workflow records weight 20", context=record.dump)
        workers.kill(first)
        assert record.in_flight() == [], f"the kill was meant to land in a timer:\n{record.dump()}"
        calls_before_restart = len(record.calls())

        await asyncio.sleep(3)  # the analysis timer fires while no worker runs
        assert await status(handle) == WorkflowExecutionStatus.RUNNING
        assert record.canary_weights() == [20]

        second = workers.start()
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT_SECONDS)

    assert result.phase == "Succeeded"
    # Nothing in flight at the kill, so every step ran exactly once: none lost, none repeated.
    assert record.canary_weights() == [20, 40, 60, 0], record.dump()
    assert record.in_flight() == []
    assert len(record.finished(c.ACT_WORKLOAD_PROMOTE)) == 1
    assert record.state() == PlatformState(
        primary_weight=100, canary_weight=0, canary_replicas=0, primary_revision=req.revision
    )
    # The new worker did everything after the restart.
    assert {call.pid for call in record.calls()[calls_before_restart:]} == {second}
    activities = await scheduled_activities_each_completed_once(handle)
    assert scheduled_canary_weights(activities) == [20, 40, 60, 0]


async def test_rollback_interrupted_by_a_killed_worker_completes_on_a_new_worker(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    record = Record(tmp_path)
    record.control(PlatformControl(metric_values={"request-success-rate": 50.0}))  # below its minimum of 99
    req = durable_request({"interval": "1s", "threshold": 1, "stepWeight": 20, "maxWeight": 60})
    async with worker_processes(dev_env, tmp_path) as workers:
        # The canary's scale-down takes 30 s on this worker: long enough to kill it in the middle.
        first = workers.start(delays={c.ACT_WORKLOAD_SCALE_TO_ZERO: 30}, heartbeat_timeout=HEARTBEAT_TIMEOUT_SECONDS)
        handle = (await start_release(dev_env.client, req, task_queue=workers.task_queue)).handle

        await eventually(
            lambda: record.canary_weights()[-1:] == [0] and bool(record.started(c.ACT_WORKLOAD_SCALE_TO_ZERO)),
            "the rollback has routed all traffic to primary and begun scaling the canary down",
            context=record.dump,
        )
        workers.kill(first)
        assert [call.activity for call in record.in_flight()] == [c.ACT_WORKLOAD_SCALE_TO_ZERO], record.dump()
        assert record.state().canary_replicas == 1

        await asyncio.sleep(2)
        assert await status(handle) == WorkflowExecutionStatus.RUNNING

        second = workers.start(heartbeat_timeout=HEARTBEAT_TIMEOUT_SECONDS)
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), RESULT_TIMEOUT_SECONDS)

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == ERR_ROLLED_BACK
    assert cause.message == "Failed checks threshold reached 1"
    assert record.state() == PlatformState(
        primary_weight=100, canary_weight=0, canary_replicas=0, primary_revision="bootstrap"
    )
    # The one step that was cut off ran again on the new worker, and only that one.
    assert record.canary_weights() == [20, 0], record.dump()
    scale_downs = record.started(c.ACT_WORKLOAD_SCALE_TO_ZERO)
    assert [(call.pid, call.attempt) for call in scale_downs] == [(first, 1), (second, 2)]
    assert [call.pid for call in record.finished(c.ACT_WORKLOAD_SCALE_TO_ZERO)] == [second]
    # In the history the rollback is one route write and one scale-down, each completed once.
    activities = await scheduled_activities_each_completed_once(handle)
    assert scheduled_canary_weights(activities) == [20, 0]
    assert [a.name for a in activities].count(c.ACT_WORKLOAD_SCALE_TO_ZERO) == 1


async def test_release_started_while_no_worker_runs_proceeds_once_one_polls(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    record = Record(tmp_path)
    req = durable_request({"interval": "1s", "stepWeight": 20, "maxWeight": 20})
    async with worker_processes(dev_env, tmp_path) as workers:
        handle = (await start_release(dev_env.client, req, task_queue=workers.task_queue)).handle

        await asyncio.sleep(1)
        assert await status(handle) == WorkflowExecutionStatus.RUNNING
        history = await handle.fetch_history()
        kinds = [event.event_type for event in history.events]
        # The server holds the start and its signal; no worker has picked anything up.
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED in kinds
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED not in kinds
        assert record.calls() == []

        workers.start()
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT_SECONDS)

    assert result.phase == "Succeeded"
    assert record.canary_weights() == [20, 0], record.dump()
