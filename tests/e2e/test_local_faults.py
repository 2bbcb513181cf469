"""Faults during a real release on the local stack: Prometheus down, the canary app crashing, HAProxy reloaded.

Each release runs with real load through HAProxy; the test breaks one piece by its pid in the middle of the
analysis and checks what a user relies on: the release ends cleanly (rolled back or promoted), traffic is on
the right version, and no process is left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

from canaryflow.client import release_state
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    INTERVAL_SECONDS,
    THRESHOLD,
    WeightRecorder,
    analysis,
    demo_canary,
    describe_state,
    haproxy_master,
    haproxy_worker,
    live_weights,
    no_orphans,
    process_alive,
    processes,
    rolled_back,
    start,
    succeeded,
    versions_answering_async,
    wait_for_state,
    workflow_task_failures,
)
from workflows.model import ReleaseState

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


PROGRESS_DEADLINE_SECONDS = 6
READINESS_POLL_SECONDS = 2  # the workflow's readiness retry interval
SLACK_SECONDS = 3.0


@pytest.fixture
async def stack(local_stack: Stack) -> AsyncIterator[Stack]:
    """The stack, brought down after the test; no process it started may be left."""
    async with no_orphans(local_stack) as checked:
        yield checked


def passed_a_metric_check(state: ReleaseState) -> bool:
    return any(d.kind == "metric" and d.message.startswith("request-success-rate") for d in state.decisions)


async def test_prometheus_down_counts_failed_checks_and_rolls_back(stack: Stack) -> None:
    threshold = THRESHOLD
    canary = demo_canary(stack, "promdown", analysis(stepWeight=10, maxWeight=80))
    handle = await start(stack, canary, "v2")
    await wait_for_state(handle, passed_a_metric_check, timeout=30)
    worker = stack.stack.worker().pid()
    prometheus = stack.stack.prometheus()
    prometheus_pid = prometheus.pid()
    assert worker is not None and prometheus_pid is not None

    assert prometheus.stop()
    assert not process_alive(prometheus_pid)
    stopped_at = await release_state(handle)

    cause = await rolled_back(handle, timeout=60)
    assert f"Failed checks threshold reached {threshold}" in cause.message
    state = await release_state(handle)
    unavailable = [
        d
        for d in state.decisions[len(stopped_at.decisions) :]
        # Either metric: Prometheus may stop between the two queries of one check.
        if d.message.startswith("Halt advancement: metric ") and " query failed: " in d.message
    ]
    assert len(unavailable) >= threshold - stopped_at.failed_checks, describe_state(state, last=25)
    assert state.failed_checks == threshold
    # The checks failed as results: neither the workflow code nor the worker process crashed.
    assert await workflow_task_failures(handle) == []
    assert stack.stack.worker().pid() == worker

    assert live_weights(stack, canary) == (100, 0)
    assert await versions_answering_async(canary.spec.service.port, 40) == {"v1": 40}
    apps = processes(stack, canary)
    assert "canary" not in apps and apps["primary"]["version"] == "v1"


async def test_crashed_canary_rolls_back_at_the_progress_deadline(stack: Stack) -> None:
    canary = demo_canary(
        stack,
        "crash",
        analysis(stepWeight=20, maxWeight=80),
        progressDeadlineSeconds=PROGRESS_DEADLINE_SECONDS,
    )
    service_port = canary.spec.service.port
    handle = await start(stack, canary, "v2")
    await wait_for_state(handle, lambda s: s.canary_weight == 20, timeout=30)
    canary_pid = processes(stack, canary)["canary"]["pid"]

    os.kill(canary_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # HAProxy retries on another server while its health check has not yet marked the canary down.
    during_crash = await versions_answering_async(service_port, 40)
    assert during_crash == {"v1": 40}

    cause = await rolled_back(handle, timeout=60)
    rolled_back_after = time.monotonic() - killed_at
    print(f"\ncanary crash -> release Failed after {rolled_back_after:.2f}s")
    assert "Progress deadline exceeded: canary not ready" in cause.message
    assert rolled_back_after <= INTERVAL_SECONDS + PROGRESS_DEADLINE_SECONDS + READINESS_POLL_SECONDS + SLACK_SECONDS
    state = await release_state(handle)
    assert state.canary_weight == 0

    assert live_weights(stack, canary) == (100, 0)
    assert await versions_answering_async(service_port, 40) == {"v1": 40}
    apps = processes(stack, canary)
    assert "canary" not in apps and apps["primary"]["version"] == "v1" and apps["primary"]["alive"]


async def test_haproxy_reload_keeps_the_weights_and_the_release_succeeds(stack: Stack) -> None:
    canary = demo_canary(stack, "reload", analysis(stepWeight=20, maxWeight=60))
    service_port = canary.spec.service.port
    handle = await start(stack, canary, "v2")
    recorder = WeightRecorder(stack, canary, handle)
    recording = asyncio.create_task(recorder.run(timeout=60))
    # Right after a step: the router writes no weights during the reload.
    await wait_for_state(handle, lambda s: s.canary_weight == 20, timeout=30, poll_seconds=0.02)
    master = haproxy_master(stack, canary)
    old_worker = haproxy_worker(stack, canary)

    os.kill(master, signal.SIGUSR2)
    deadline = time.monotonic() + 5
    new_worker = old_worker
    while new_worker == old_worker and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        try:
            new_worker = haproxy_worker(stack, canary)
        except Exception:  # the new worker is taking over the socket
            continue
    assert new_worker != old_worker, "HAProxy did not reload"
    assert haproxy_master(stack, canary) == master
    state = await release_state(handle)
    assert live_weights(stack, canary) == (state.primary_weight, state.canary_weight) == (80, 20)
    answered = await versions_answering_async(service_port, 40)
    assert set(answered) <= {"v1", "v2"} and sum(answered.values()) == 40  # every request got a 200

    await recording
    await succeeded(handle, timeout=10)
    # The 20 % step was read right after the reload (above); the recorder's own readings of it may all fall inside
    # the reload window, when HAProxy's runtime API does not answer.
    assert recorder.haproxy_canary_steps() in ([20, 40, 60, 0], [40, 60, 0])
    assert recorder.state_canary_steps() == [20, 40, 60, 0]
    assert not recorder.disagreements(), recorder.disagreements()[:5]
    assert live_weights(stack, canary) == (100, 0)
    assert await versions_answering_async(service_port, 40) == {"v2": 40}
