"""Releases on the real local stack survive a SIGKILLed worker and a restarted Temporal server.

One canary gets ten releases in a row, good and bad versions in turn. During each, the worker process is
SIGKILLed at a seeded random moment of a chosen stage (an analysis step, the promotion, the rollback) and
started again 1-3 s later. Every release must still end as its version deserves (Succeeded, or Failed by its
rollback) and leave the platform matching that end: HAProxy at 100/0 (its runtime socket), one app process,
the primary, on the promoted or the previous version (no canary process, recorded or not), and nothing left
once the stack is down (`checked_stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from canaryflow.client import release_decisions
from canaryflow.spec import Canary
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    ReleaseHandle,
    checked_stack,  # noqa: F401 - a fixture
    demo_canary,
    live_weights,
    processes,
    start,
    versions_answering,
    wait_for_state,
)
from workflows.model import Decision, ReleaseState
from workflows.release import ERR_ROLLED_BACK

pytestmark = pytest.mark.integration

SEED = 1121
RELEASES = 10
INTERVAL_SECONDS = 1
THRESHOLD = 2
# Windows of two scrapes (1 s apart), the least that gives a rate. The next release's first check comes at
# least one readiness poll (2 s) and one interval later, so it never reads the errors of the bad release
# before it. Two failed checks roll back: a bad version fails every check; a good one may see "no values" in
# its first window.
SUCCESS_RATE = {
    "name": "request-success-rate",
    "interval": "2s",
    "thresholdRange": {"min": 99},
}
ANALYSIS: dict[str, Any] = {
    "interval": f"{INTERVAL_SECONDS}s",
    "threshold": THRESHOLD,
    "stepWeight": 25,
    "maxWeight": 50,
    "metrics": [SUCCESS_RATE],
}
# A step activity lost with its worker is retried only after its start-to-close timeout (60 s).
RELEASE_TIMEOUT_SECONDS = 100.0
STAGE_TIMEOUT_SECONDS = 40.0
# Where each release's kill is aimed, in turn; the delay inside the stage is random.
GOOD_STAGES = ("step", "promotion")
BAD_STAGES = ("step", "rollback")


@dataclass(frozen=True)
class Version:
    name: str
    good: bool


def release_versions(count: int) -> list[Version]:
    return [Version(f"v{n + 2}" if n % 2 == 0 else f"v{n + 2}-bad", good=n % 2 == 0) for n in range(count)]


@dataclass
class Kill:
    """One SIGKILL of the worker: where it was aimed, where it landed, and how the release ended."""

    version: Version
    aimed_at: str
    at: float = 0.0  # epoch seconds
    after_seconds: float = 0.0
    in_flight: list[str] = field(default_factory=list)
    down_seconds: float = 0.0
    landed_in: str = ""
    outcome: str = ""
    release_seconds: float = 0.0
    after_kill: AfterKill | None = None

    def row(self) -> str:
        in_flight = ",".join(self.in_flight) or "-"
        resumed = ",".join(self.after_kill.completed) if self.after_kill else "?"
        timeouts = ",".join(self.after_kill.timeouts) if self.after_kill else "?"
        resumed_after = self.after_kill.resumed_after if self.after_kill else float("nan")
        return (
            f"{self.version.name:8} aimed at {self.aimed_at:9} landed in {self.landed_in:9} "
            f"+{self.after_seconds:5.2f}s in flight: {in_flight}; worker down {self.down_seconds:.1f}s; "
            f"{self.outcome} after {self.release_seconds:4.1f}s; "
            f"resumed {resumed_after:4.1f}s after the kill; "
            f"timeouts: {timeouts or '-'}; then completed: {resumed}"
        )


@dataclass(frozen=True)
class AfterKill:
    completed: list[str]  # activities completed after the kill, in order
    timeouts: list[str]  # what the server had to time out: tasks and activities the dead worker held
    resumed_after: float  # seconds from the kill to the first workflow task a worker completed


def kill_plan(versions: list[Version]) -> list[str]:
    good, bad = iter(GOOD_STAGES * len(versions)), iter(BAD_STAGES * len(versions))
    return [next(good) if version.good else next(bad) for version in versions]


# ----------------------------------------------------------------------------------------------------------
# Killing


async def wait_for_stage(handle: ReleaseHandle, stage: str, rng: random.Random) -> None:
    """Return at a random moment of `stage` of the running release."""
    if stage == "step":  # within an analysis interval after the first traffic step
        await wait_for_state(handle, lambda s: s.canary_weight > 0, STAGE_TIMEOUT_SECONDS, poll_seconds=0.05)
        await asyncio.sleep(rng.uniform(0.0, INTERVAL_SECONDS))
    elif stage == "promotion":  # restarting the primary, waiting for it, shifting traffic back: 0.1-2 s
        await wait_for_state(handle, promoting, STAGE_TIMEOUT_SECONDS, poll_seconds=0.01)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
    else:  # the rollback runs for a few tens of milliseconds: kill as soon as it shows
        await wait_for_state(handle, rolling_back, STAGE_TIMEOUT_SECONDS, poll_seconds=0.005)
        await asyncio.sleep(rng.uniform(0.0, 0.02))


def promoting(state: ReleaseState) -> bool:
    return state.phase == "Promoting"


def rolling_back(state: ReleaseState) -> bool:
    return any(d.message.startswith("Rolling back") for d in state.decisions) or state.phase == "Failed"


def sigkill_worker(stack: Stack) -> None:
    pid = stack.stack.worker().pid()
    assert pid is not None, f"the worker is not running:\n{stack.stack.worker().log_tail()}"
    os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # our child: reap it, so its pid file no longer matches
        os.waitpid(pid, 0)


async def activities_in_flight(handle: ReleaseHandle) -> list[str]:
    """Activities a worker had started and not completed, as the server sees them."""
    description = await handle.describe()
    return [
        pending.activity_type.name
        for pending in description.raw_description.pending_activities
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    ]


def stage_at(decisions: list[Decision], moment: float) -> str:
    """Where the release was at `moment` (epoch seconds), from its decision log."""
    before = [d for d in decisions if d.at.timestamp() <= moment]
    phase = next((d.message.removeprefix("phase ") for d in reversed(before) if d.kind == "phase"), "")
    if phase in ("Succeeded", "Failed"):
        return "after the end"
    if any(d.message.startswith("Rolling back") for d in before):
        return "rollback"
    if phase in ("Promoting", "Finalising"):
        return "promotion"
    if any(re.match(r"Advance \S+ canary weight", d.message) for d in before):
        return "step"
    return phase or "start"


async def after_kill(handle: ReleaseHandle, moment: float) -> AfterKill:
    """From the release's history: what completed after `moment` (`name#attempt` when retried), and what the
    server had to time out because its worker was gone."""
    scheduled: dict[int, str] = {}
    attempts: dict[int, int] = {}
    completed, timeouts = [], []
    resumed_at = float("nan")
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            attempts[started.scheduled_event_id] = started.attempt
        if event.event_time.ToDatetime(tzinfo=UTC).timestamp() < moment:
            continue
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and math.isnan(resumed_at):
            resumed_at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
            attempt = attempts.get(scheduled_id, 1)
            completed.append(scheduled[scheduled_id] + (f"#{attempt}" if attempt > 1 else ""))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            timeouts.append(scheduled[event.activity_task_timed_out_event_attributes.scheduled_event_id])
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            timeouts.append("workflow task")
    return AfterKill(completed, timeouts, resumed_at - moment)


# ----------------------------------------------------------------------------------------------------------
# Outcomes


async def final_phase(stack: Stack, handle: ReleaseHandle) -> str:
    """Succeeded, or Failed when the release ended by its rollback; any other end fails the test."""
    try:
        result = await asyncio.wait_for(handle.result(), RELEASE_TIMEOUT_SECONDS)
    except WorkflowFailureError as failure:
        cause = failure.cause
        assert isinstance(cause, ApplicationError) and cause.type == ERR_ROLLED_BACK, failure
        return "Failed"
    except TimeoutError:
        stuck = await stuck_release(stack, handle)
        raise AssertionError(f"no end within {RELEASE_TIMEOUT_SECONDS:g}s\n{stuck}") from None
    return result.phase


async def stuck_release(stack: Stack, handle: ReleaseHandle) -> str:
    """What a release that does not end is waiting for: pending activities, its last decisions, the worker."""
    description = await handle.describe()
    pending = [
        f"  {p.activity_type.name} {PendingActivityState.Name(p.state)} attempt {p.attempt}: "
        f"{p.last_failure.message or '-'}"
        for p in description.raw_description.pending_activities
    ]
    last_decisions = (await release_decisions(handle))[-12:]
    decisions = [f"  {d.at:%H:%M:%S.%f} {d.phase} {d.message}" for d in last_decisions]
    worker = stack.stack.worker()
    lines = ["pending activities:", *pending, "last decisions:", *decisions]
    return "\n".join([*lines, f"worker pid {worker.pid()}, log tail:", worker.log_tail(30)])


def demo_app_processes(canary: Canary) -> list[tuple[int, str]]:
    """(port, version) of every live demo app on the canary's primary or canary port, recorded or not."""
    local = canary.spec.local
    assert local is not None
    ports = {str(local.primary_port), str(local.canary_port)}
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if "canaryflow.demoapp" in argv and "--port" in argv and "--version" in argv:
            port, version = argv[argv.index("--port") + 1], argv[argv.index("--version") + 1]
            if port in ports:
                found.append((int(port), version))
    return found


def assert_settled(stack: Stack, canary: Canary, primary_version: str) -> None:
    """All traffic on a primary that runs `primary_version`; no canary process."""
    local = canary.spec.local
    assert local is not None
    assert live_weights(stack, canary) == (100, 0)
    described = processes(stack, canary)
    assert described["primary"]["version"] == primary_version and described["primary"]["alive"], described
    assert "canary" not in described or not described["canary"]["alive"], described
    assert demo_app_processes(canary) == [(local.primary_port, primary_version)]
    assert versions_answering(canary.spec.service.port, 10) == {primary_version: 10}


# ----------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.timeout(900)
async def test_releases_end_consistently_when_the_worker_is_sigkilled_in_every_stage(
    checked_stack: Stack,  # noqa: F811 - the fixture imported above
) -> None:
    stack, rng = checked_stack, random.Random(SEED)
    versions = release_versions(RELEASES)
    canary = demo_canary(stack, "durable", ANALYSIS)
    assert canary.spec.local is not None
    bad_versions = {v.name: {"error_rate": 0.3} for v in versions if not v.good}
    canary.spec.local.env["DEMOAPP_BEHAVIOUR"] = json.dumps(bad_versions)
    primary_version = "v1"
    kills = [Kill(version, aimed_at) for version, aimed_at in zip(versions, kill_plan(versions), strict=True)]
    began = time.monotonic()
    try:
        for kill in kills:
            started = time.time()
            handle = await start(stack, canary, kill.version.name)
            await wait_for_stage(handle, kill.aimed_at, rng)
            sigkill_worker(stack)
            kill.at = time.time()
            kill.after_seconds = kill.at - started
            kill.in_flight = await activities_in_flight(handle)
            kill.down_seconds = rng.uniform(1.0, 3.0)
            await asyncio.sleep(kill.down_seconds)
            stack.stack.worker().start()

            kill.outcome = await final_phase(stack, handle)
            kill.release_seconds = time.time() - started
            kill.landed_in = stage_at(await release_decisions(handle), kill.at)
            kill.after_kill = await after_kill(handle, kill.at)
            assert kill.outcome == ("Succeeded" if kill.version.good else "Failed"), kill.row()
            if kill.version.good:
                primary_version = kill.version.name
            assert_settled(stack, canary, primary_version)
    finally:
        print(f"worker kills (seed {SEED}), {time.monotonic() - began:.0f}s in all:")
        print("\n".join(kill.row() for kill in kills))

    # Each stage was really hit at least once, not only aimed at.
    assert {"step", "promotion", "rollback"} <= {kill.landed_in for kill in kills}


async def test_release_finishes_when_the_temporal_server_restarts_mid_analysis(
    checked_stack: Stack,  # noqa: F811 - the fixture imported above
) -> None:
    stack = checked_stack
    # Three steps, so the restart lands mid-analysis.
    canary = demo_canary(stack, "server-restart", {**ANALYSIS, "maxWeight": 75})
    handle = await start(stack, canary, "v2")
    worker = stack.stack.worker()
    worker_pid = worker.pid()

    await wait_for_state(handle, lambda s: s.canary_weight == 25, STAGE_TIMEOUT_SECONDS)
    await asyncio.to_thread(stack.stack.temporal.stop)
    await asyncio.sleep(2)
    await asyncio.to_thread(stack.stack.temporal.start)
    await asyncio.sleep(2)  # a worker that gives up on the server has exited by now

    worker_survived = worker.pid() == worker_pid
    if not worker_survived:
        worker.start()  # so the release itself can still be checked
    phase = await final_phase(stack, handle)
    decisions = await release_decisions(handle)
    step_event = re.compile(r"Advance server-restart\.e2e canary weight (\d+)")
    steps = [int(match[1]) for d in decisions if (match := step_event.fullmatch(d.message))]

    assert phase == "Succeeded"
    assert_settled(stack, canary, "v2")
    # The release went on from where it was: no step repeated, none lost.
    assert steps == [25, 50, 75]
    assert worker_survived, f"the worker exited when the Temporal server restarted:\n{worker.log_tail(40)}"
