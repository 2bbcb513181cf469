"""Shared helpers for the end-to-end tests of real releases on the local stack (tests/e2e/test_local_*.py).

- `analysis(**fields)` / `demo_canary(stack, name, analysis, ...)`: short-interval analysis, and a demo-app canary
  with `hey` load hooks (through HAProxy, or at the canary's port for blue/green).
- `release_request(canary, version)` / `start(stack, canary, version)`: a release of the demo app to `version`.
- `wait_for_state(handle, predicate, timeout)`: poll the workflow's `state` query until `predicate` holds.
- `live_weights(stack, canary)`: the weights HAProxy really applies (runtime API `get weight`).
- `versions_answering(port, requests, headers)`: which version answered N real requests (`X-Version`).
- `WeightRecorder`: samples the workflow state and HAProxy's live weights side by side during a release.
- `rolled_back(handle)`: waits for the result and returns the `ReleaseRolledBack` cause of the failure.
- `checked_stack` fixture / `no_orphans(local_stack)`: `down()` at the end, then the orphan check: no
  process the stack started (Temporal, Prometheus, worker, load tester, hey, HAProxy, demo apps) may remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.routers import haproxy_config as hc
from activities.routers.haproxy import HAProxyRouter, running_pid, runtime_command
from activities.workloads.local import describe
from canaryflow.client import StartedRelease, release_state, start_release
from canaryflow.spec import Canary
from tests.e2e.conftest import Stack
from workflows.model import Decision, ReleaseRequest, ReleaseResult, ReleaseState
from workflows.release import CanaryRelease

ReleaseHandle = WorkflowHandle[CanaryRelease, ReleaseResult]

FINAL_PHASES = ("Succeeded", "Failed")
# 50 req/s: at canary weight 20 a 2 s interval sees about 20 canary requests, enough that a version with 30 %
# errors cannot pass a check by luck (0.7^20 < 0.1 %); the stack's default 20 req/s gives 8 (6 % luck).
LOAD_REQUESTS_PER_SECOND = 50
ROLLED_BACK = "ReleaseRolledBack"


# Analysis ticks every 2 s; metric windows of 10 s (shrunk by the product to the time since the last step).
INTERVAL_SECONDS = 2
# A release's first check often reads "no values": Prometheus needs two scrapes of the HAProxy the release just
# started. On a busy machine the second check can too, so 3 keeps healthy releases from rolling back.
THRESHOLD = 3
SCRAPE_INTERVAL_SECONDS = 1  # the local stack's Prometheus
SUCCESS_RATE: dict[str, Any] = {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}}
DURATION: dict[str, Any] = {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}}


# ----------------------------------------------------------------------------------------------------------------
# Releases


def analysis(**fields: Any) -> dict[str, Any]:
    """An analysis block with short intervals and both builtin metrics; `fields` add to or replace them."""
    return {"interval": f"{INTERVAL_SECONDS}s", "threshold": THRESHOLD, "metrics": [SUCCESS_RATE, DURATION], **fields}


def demo_canary(
    stack: Stack,
    name: str,
    analysis: dict[str, Any],
    *,
    load_target: str = "apex",
    load_args: str = "",
    requests_per_second: int = LOAD_REQUESTS_PER_SECOND,
    **spec: Any,
) -> Canary:
    """`stack.canary(...)` with the load hooks added, from the pre-rollout tick on: `hey` through HAProxy
    (`load_target="apex"`) or straight at the canary's port (`"canary"`)."""
    ports = stack.canary(name, analysis)  # allocates the free ports the hook has to name
    local = ports.spec.local
    assert local is not None
    port = ports.spec.service.port if load_target == "apex" else local.canary_port
    # hey's last -q wins: per worker, and the hook runs 2 workers.
    rate = f"-q {max(1, requests_per_second // 2)}"
    hooks = stack.load_hook(port, extra_args=f"{rate} {load_args}".strip())
    return stack.canary(
        name,
        {**analysis, "webhooks": [*analysis.get("webhooks", []), *hooks]},
        service={"port": ports.spec.service.port},
        local=local.model_dump(by_alias=True),
        **spec,
    )


def release_request(canary: Canary, version: str) -> ReleaseRequest:
    return ReleaseRequest(canary=canary, revision=version, image=version, requested_by="e2e", min_interval_seconds=1)


async def start(stack: Stack, canary: Canary, version: str) -> ReleaseHandle:
    started: StartedRelease = await start_release(
        stack.client, release_request(canary, version), task_queue=stack.settings.task_queue
    )
    return started.handle


async def wait_for_state(
    handle: ReleaseHandle,
    predicate: Callable[[ReleaseState], bool],
    timeout: float,
    *,
    poll_seconds: float = 0.1,
) -> ReleaseState:
    """The first state the `state` query returns for which `predicate` holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: ReleaseState | None = None
    while time.monotonic() < deadline:
        last = await release_state(handle)
        if predicate(last):
            return last
        await asyncio.sleep(poll_seconds)
    summary = "no state" if last is None else describe_state(last)
    raise AssertionError(f"release state did not reach the expected condition within {timeout:g}s: {summary}")


def describe_state(state: ReleaseState, last: int = 15) -> str:
    """The state's counters and its last decisions, for assertion messages."""
    log = "\n".join(f"  {d.at:%H:%M:%S.%f} {d.phase} {d.kind}: {d.message}" for d in state.decisions[-last:])
    return (
        f"phase {state.phase}, weights {state.primary_weight}/{state.canary_weight}, iterations "
        f"{state.iterations}, failed checks {state.failed_checks}/{state.threshold}\n{log}"
    )


async def rolled_back(handle: ReleaseHandle, timeout: float) -> ApplicationError:
    """Wait for the release to end; it must fail with `ReleaseRolledBack`, which is returned."""
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError), f"unexpected failure cause {cause!r}"
    assert cause.type == ROLLED_BACK, f"failure type {cause.type}: {cause.message}"
    return cause


async def succeeded(handle: ReleaseHandle, timeout: float) -> ReleaseResult:
    try:
        result = await asyncio.wait_for(handle.result(), timeout)
    except WorkflowFailureError as failure:
        state = await release_state(handle)
        raise AssertionError(f"the release failed: {failure.cause}\n{describe_state(state)}") from failure
    assert result.phase == "Succeeded", result
    return result


async def workflow_task_failures(handle: ReleaseHandle) -> list[str]:
    """Failed workflow tasks in the release's history (a crash of the workflow code, not a failed step)."""
    failures = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failures.append(str(event.workflow_task_failed_event_attributes.failure.message))
    return failures


def first_decision(decisions: Iterable[Decision], predicate: Callable[[Decision], bool]) -> Decision:
    for decision in decisions:
        if predicate(decision):
            return decision
    raise AssertionError("no decision in the log matches")


def seconds_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


# ----------------------------------------------------------------------------------------------------------------
# HAProxy and the apps, observed from outside the product


def haproxy_paths(stack: Stack, canary: Canary) -> hc.HAProxyPaths:
    return HAProxyRouter(stack.settings.state_dir).paths(canary)


def live_weights(stack: Stack, canary: Canary) -> tuple[int, int]:
    """(primary, canary) weights HAProxy applies now, read through its runtime socket."""
    paths = haproxy_paths(stack, canary)
    output = runtime_command(paths, f"get weight {hc.BACKEND}/{hc.PRIMARY}; get weight {hc.BACKEND}/{hc.CANARY}")
    answers = [block.strip() for block in output.strip().split("\n\n")]
    assert len(answers) == 2, f"unexpected `get weight` output {output!r}"
    primary, canary_weight = (int(answer.split(" ", 1)[0]) for answer in answers)
    return primary, canary_weight


def haproxy_master(stack: Stack, canary: Canary) -> int:
    pid = running_pid(haproxy_paths(stack, canary))
    assert pid is not None, "HAProxy is not running"
    return pid


def haproxy_worker(stack: Stack, canary: Canary) -> int:
    for line in runtime_command(haproxy_paths(stack, canary), "show info").splitlines():
        if line.startswith("Pid:"):
            return int(line.split(":", 1)[1])
    raise AssertionError("HAProxy's `show info` has no Pid line")


def processes(stack: Stack, canary: Canary) -> dict[str, dict[str, Any]]:
    """role -> {pid, version, port, alive} of the demo apps, from the workload's state on disk."""
    return describe(stack.settings.state_dir, canary.metadata.namespace, canary.metadata.name)


def versions_answering(port: int, requests: int, headers: Mapping[str, str] | None = None) -> Counter[str]:
    """How many of `requests` real requests through 127.0.0.1:`port` each version answered (`X-Version`).

    Non-200 answers count as `"<version> <status>"`, so a test sees errors too.
    """
    answered: Counter[str] = Counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5.0) as client:
        for _ in range(requests):
            response = client.get("/", headers=dict(headers or {}))
            version = response.headers.get("x-version", "<none>")
            answered[version if response.status_code == 200 else f"{version} {response.status_code}"] += 1
    return answered


async def versions_answering_async(port: int, requests: int, headers: Mapping[str, str] | None = None) -> Counter[str]:
    return await asyncio.to_thread(versions_answering, port, requests, headers)


@dataclass(frozen=True)
class WeightSample:
    at: datetime  # when HAProxy was read (UTC, comparable with the decision log)
    state_before: tuple[int, int]
    haproxy: tuple[int, int] | None  # None while HAProxy does not answer (not started yet, reloading)
    state_after: tuple[int, int]
    phase: str

    @property
    def stable(self) -> bool:
        """The workflow state did not change while HAProxy was read."""
        return self.state_before == self.state_after


@dataclass
class WeightRecorder:
    """Polls the workflow state and HAProxy's live weights side by side until the release ends."""

    stack: Stack
    canary: Canary
    handle: ReleaseHandle
    samples: list[WeightSample] = field(default_factory=list)
    started_at: list[datetime] = field(default_factory=list)

    async def run(self, timeout: float, poll_seconds: float = 0.05) -> None:
        self.started_at[:] = [datetime.now(UTC)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = await release_state(self.handle)
            read_at = datetime.now(UTC)
            haproxy = await asyncio.to_thread(self._haproxy)
            after = await release_state(self.handle)
            self.samples.append(
                WeightSample(
                    read_at,
                    (before.primary_weight, before.canary_weight),
                    haproxy,
                    (after.primary_weight, after.canary_weight),
                    after.phase,
                )
            )
            if after.phase in FINAL_PHASES:
                return
            await asyncio.sleep(poll_seconds)

    def _haproxy(self) -> tuple[int, int] | None:
        try:
            return live_weights(self.stack, self.canary)
        except Exception:  # not started yet or reloading: this sample has no HAProxy reading
            return None

    def state_canary_steps(self) -> list[int]:
        """The canary weights the workflow recorded, in order, from the first step away from 0."""
        return steps(sample.state_after[1] for sample in self.samples)

    def haproxy_canary_steps(self) -> list[int]:
        """The canary weights HAProxy applied, in order, from the first step away from 0 (the weight before it
        is only seen when HAProxy answers before the first step, which the release may not leave time for)."""
        return steps(sample.haproxy[1] for sample in self.samples if sample.haproxy is not None)

    def first_reading(self, weights: tuple[int, int], after: datetime) -> datetime | None:
        """When HAProxy was first seen applying `weights` (primary, canary) after `after`."""
        return next((s.at for s in self.samples if s.at > after and s.haproxy == weights), None)

    def longest_gap_seconds(self) -> float:
        """The longest time between two samples: a step shorter than this may be missing from the readings."""
        times = [*self.started_at[:1], *(sample.at for sample in self.samples)]
        return max(((b - a).total_seconds() for a, b in itertools.pairwise(times)), default=0.0)

    def disagreements(self) -> list[WeightSample]:
        """Samples where the state held still around the HAProxy reading and HAProxy showed other weights.

        HAProxy is written before the workflow records the step, so the last sample of each step may already
        see the next weights: a disagreement counts only when the next sample still shows the same state.
        """
        found = []
        for sample, following in zip(self.samples, self.samples[1:], strict=False):
            if sample.haproxy is None or not sample.stable or following.state_before != sample.state_after:
                continue
            if sample.haproxy != sample.state_after:
                found.append(sample)
        return found


def steps(weights: Iterable[int]) -> list[int]:
    """`weights` without the leading zeros and without consecutive repeats: the sequence of steps."""
    found: list[int] = []
    for weight in weights:
        if (found or weight != 0) and (not found or found[-1] != weight):
            found.append(weight)
    return found


# ----------------------------------------------------------------------------------------------------------------
# Orphan processes


@dataclass(frozen=True)
class TrackedProcess:
    pid: int
    start_ticks: int
    command: str


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int) -> bool:
    """A live process (not a zombie) has this pid."""
    return _start_ticks(pid) is not None


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _mentions(pid: int, needle: bytes) -> bool:
    """The process' command line or environment contains `needle` (the stack's state directory)."""
    for part in ("cmdline", "environ"):
        try:
            if needle in Path(f"/proc/{pid}/{part}").read_bytes():
                return True
        except OSError:
            continue
    return False


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _stack_roots(stack: Stack) -> set[int]:
    """The pids the stack and the releases recorded: managed processes, HAProxy masters, demo apps."""
    local = stack.stack
    roots = {
        pid
        for pid in (
            local.temporal.running_pid(),
            local.prometheus().pid(),
            local.loadtester().pid(),
            local.worker().pid(),
        )
        if pid is not None
    }
    canaries = stack.settings.state_dir / "local"
    for canary_dir in canaries.glob("*/*") if canaries.is_dir() else []:
        pid_file = canary_dir / "haproxy" / "haproxy.pid"
        with contextlib.suppress(OSError, ValueError):
            roots.add(int(pid_file.read_text().strip()))
        for role in describe(stack.settings.state_dir, canary_dir.parent.name, canary_dir.name).values():
            if role["alive"]:
                roots.add(int(role["pid"]))
    return roots


def stack_processes(stack: Stack) -> list[TrackedProcess]:
    """Every live process the stack started: its recorded processes, all their descendants (hey under the load
    tester, HAProxy workers, apps under the worker), and anything naming the state directory."""
    me = os.getpid()
    needle = str(stack.settings.state_dir).encode()
    pids = _all_pids()
    parents = {pid: _parent(pid) for pid in pids}
    wanted = _stack_roots(stack) | {pid for pid in pids if pid != me and _mentions(pid, needle)}
    changed = True
    while changed:
        children = {pid for pid, parent in parents.items() if parent in wanted and pid not in wanted}
        wanted |= children
        changed = bool(children)
    tracked = []
    for pid in sorted(wanted - {me}):
        ticks = _start_ticks(pid)
        if ticks is not None:
            tracked.append(TrackedProcess(pid, ticks, _command(pid)))
    return tracked


def leftovers(tracked: Iterable[TrackedProcess], state_dir: Path) -> list[TrackedProcess]:
    """Processes of `tracked` still alive (same pid and start time), plus any live one naming `state_dir`."""
    me = os.getpid()
    alive = [process for process in tracked if _start_ticks(process.pid) == process.start_ticks]
    known = {process.pid for process in alive}
    needle = str(state_dir).encode()
    for pid in _all_pids():
        if pid in (me, *known) or not _mentions(pid, needle):
            continue
        ticks = _start_ticks(pid)
        if ticks is not None:
            alive.append(TrackedProcess(pid, ticks, _command(pid)))
    return alive


def kill_leftovers(processes_left: Iterable[TrackedProcess]) -> None:
    """Clean up after a failed orphan check, so one failing test does not leak into the next."""
    for process in processes_left:
        if _start_ticks(process.pid) == process.start_ticks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


@asynccontextmanager
async def no_orphans(stack: Stack) -> AsyncIterator[Stack]:
    """Yields `stack`; afterwards the stack is brought down and no process it started may be left running.

    For a test module's stack fixture: `async with no_orphans(local_stack) as stack: yield stack`.
    """
    yield stack
    tracked = stack_processes(stack)
    assert tracked, "the stack's processes could not be found (the orphan check would prove nothing)"
    await asyncio.to_thread(stack.stack.down)
    deadline = time.monotonic() + 5.0
    remaining = leftovers(tracked, stack.settings.state_dir)
    while remaining and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        remaining = leftovers(tracked, stack.settings.state_dir)
    kill_leftovers(remaining)
    assert not remaining, "processes left after `down`:\n" + "\n".join(
        f"  pid {process.pid}: {process.command}" for process in remaining
    )


@pytest.fixture
async def checked_stack(local_stack: Stack) -> AsyncIterator[Stack]:
    """`local_stack` with the orphan check of `no_orphans` (import it into a test module to use it by name)."""
    async with no_orphans(local_stack) as stack:
        yield stack
