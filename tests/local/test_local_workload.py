"""LocalWorkload: the primary and canary of a LocalApp as real processes (the demo app), driven like the workflow does.

Every test ends with no process left behind: the `seen` fixture stops everything and checks each pid it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_NOT_READY, ERR_PROGRESS_DEADLINE, ReadinessCheck, ReleaseTarget
from activities.workloads import local as local_module
from activities.workloads.base import WorkloadProvider
from activities.workloads.local import LocalWorkload, app_dir, describe, stop_all
from canaryflow.spec import CANARYFLOW_API_VERSION, Canary
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NAMESPACE, NAME = "local", "demo"
DEMO_COMMAND = ["{python}", "-m", "canaryflow.demoapp", "--port", "{port}", "--version", "{version}"]


def local_target(image: str | None = None, **local: Any) -> ReleaseTarget:
    doc = {
        "apiVersion": CANARYFLOW_API_VERSION,
        "kind": "Canary",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "provider": "haproxy",
            "targetRef": {"apiVersion": CANARYFLOW_API_VERSION, "kind": "LocalApp", "name": NAME},
            "service": {"port": free_port()},
            "local": {
                "command": DEMO_COMMAND,
                "version": "v1",
                "primaryPort": free_port(),
                "canaryPort": free_port(),
                "routerMetricsPort": free_port(),
                **local,
            },
            "analysis": {"interval": "10s", "threshold": 2, "stepWeight": 10},
        },
    }
    return ReleaseTarget(canary=Canary.model_validate(doc), image=image)


def ports(target: ReleaseTarget) -> tuple[int, int]:
    local = target.canary.spec.local
    assert local is not None
    return local.primary_port, local.canary_port


def readiness(target: ReleaseTarget, role: str, *, started_seconds_ago: float = 0.0) -> ReadinessCheck:
    return ReadinessCheck.model_validate(
        {
            "target": target,
            "workload": role,
            "progress_deadline_seconds": 600,
            "rollout_started_at": time.time() - started_seconds_ago,
        }
    )


async def wait_ready(workload: LocalWorkload, target: ReleaseTarget, role: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            await workload.check_ready(readiness(target, role))
            return
        except ApplicationError as error:
            assert error.type == ERR_NOT_READY, error
            assert time.monotonic() < deadline, f"{role} never became ready: {error}"
            await asyncio.sleep(0.02)


async def not_ready(workload: LocalWorkload, check: ReadinessCheck) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await workload.check_ready(check)
    return raised.value


def get(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=5)


def pids(state_dir: Path) -> dict[str, int]:
    return {role: entry["pid"] for role, entry in describe(state_dir, NAMESPACE, NAME).items()}


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Seen:
    """Every pid a test observed, so the fixture can prove none survives the test."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pids: set[int] = set()

    def now(self) -> dict[str, int]:
        current = pids(self.state_dir)
        self.pids.update(current.values())
        return current


@pytest.fixture
def seen(tmp_path: Path) -> Iterator[Seen]:
    tracker = Seen(tmp_path)
    yield tracker
    tracker.now()
    stop_all(tmp_path, NAMESPACE, NAME)
    survivors = [pid for pid in tracker.pids if process_exists(pid)]
    assert survivors == [], f"processes left behind: {survivors}"


@pytest.fixture
def workload(tmp_path: Path, seen: Seen) -> LocalWorkload:
    return LocalWorkload(tmp_path)


def test_local_workload_is_a_workload_provider(tmp_path: Path) -> None:
    provider: WorkloadProvider = LocalWorkload(tmp_path)
    assert provider is not None


async def test_initialize_bootstraps_the_primary_on_the_spec_version(workload: LocalWorkload, seen: Seen) -> None:
    target = local_target(image="v2", env={"DEMO_ROLE": "{role}", "DEMO_ID": "{namespace}/{name}"})
    primary_port, canary_port = ports(target)
    await workload.initialize(target)
    await wait_ready(workload, target, "primary")

    response = get(primary_port)
    assert (response.text, response.headers["X-Version"]) == ("v1", "v1")
    directory = app_dir(workload.state_dir, NAMESPACE, NAME)
    record = json.loads((directory / "primary.json").read_text())
    assert record["pid"] == seen.now()["primary"]
    assert (record["version"], record["port"]) == ("v1", primary_port)
    assert record["command"] == [
        sys.executable,
        "-m",
        "canaryflow.demoapp",
        "--port",
        str(primary_port),
        "--version",
        "v1",
    ]
    assert record["started_at"] > 0
    environ = Path(f"/proc/{record['pid']}/environ").read_bytes().split(b"\0")
    assert b"DEMO_ROLE=primary" in environ and b"DEMO_ID=local/demo" in environ
    assert json.loads((directory / "canary-desired.json").read_text()) == {"version": "v2"}
    assert not (directory / "canary.json").exists()
    assert "listening on" in (directory / "primary.log").read_text()
    with pytest.raises(httpx.ConnectError):
        get(canary_port)  # initialize keeps the canary scaled to zero


async def test_scale_from_zero_starts_the_canary_and_every_operation_is_idempotent(
    workload: LocalWorkload,
    seen: Seen,
) -> None:
    target = local_target(image="v2")
    primary_port, canary_port = ports(target)
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await wait_ready(workload, target, "canary")
    assert get(canary_port).text == "v2"
    before = seen.now()

    # A worker that crashed mid-release runs the same activities again: nothing restarts.
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await workload.check_ready(readiness(target, "primary"))
    await workload.check_ready(readiness(target, "canary"))
    assert seen.now() == before

    await workload.promote(target)
    promoted = seen.now()
    assert promoted["primary"] != before["primary"] and promoted["canary"] == before["canary"]
    await workload.promote(target)
    assert seen.now() == promoted
    await wait_ready(workload, target, "primary")
    assert get(primary_port).text == "v2"

    await workload.scale_to_zero(target)
    await workload.scale_to_zero(target)
    assert seen.now() == {"primary": promoted["primary"]}
    assert not process_exists(promoted["canary"])
    assert not process_exists(before["primary"])


async def test_promote_moves_the_primary_to_the_canary_version_while_the_canary_keeps_serving(
    workload: LocalWorkload,
    seen: Seen,
) -> None:
    target = local_target(image="v2")
    primary_port, canary_port = ports(target)
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await wait_ready(workload, target, "canary")
    await wait_ready(workload, target, "primary")
    assert get(primary_port).text == "v1"

    await workload.promote(target)
    assert get(canary_port).text == "v2"  # still up: the router points at it while the primary restarts
    await wait_ready(workload, target, "primary")
    response = get(primary_port)
    assert (response.text, response.headers["X-Version"]) == ("v2", "v2")
    assert describe(workload.state_dir, NAMESPACE, NAME)["primary"]["version"] == "v2"

    canary_pid = seen.now()["canary"]
    await workload.scale_to_zero(target)
    assert not process_exists(canary_pid)
    assert "canary" not in describe(workload.state_dir, NAMESPACE, NAME)
    with pytest.raises(httpx.ConnectError):
        get(canary_port)
    assert get(primary_port).text == "v2"


async def test_check_ready_reports_why_not_and_gives_up_after_the_progress_deadline(
    workload: LocalWorkload,
    seen: Seen,
) -> None:
    # Starts, but never listens.
    target = local_target(image="v2", command=["{python}", "-c", "import time; time.sleep(60)", "{port}"])
    await workload.initialize(target)

    error = await not_ready(workload, readiness(target, "canary"))
    assert (error.type, error.non_retryable) == (ERR_NOT_READY, False)
    assert "no canary process is running" in str(error)

    await workload.scale_from_zero(target)
    seen.now()
    error = await not_ready(workload, readiness(target, "canary"))
    assert (error.type, error.non_retryable) == (ERR_NOT_READY, False)
    assert "connection refused" in str(error) and "/readyz" in str(error)

    error = await not_ready(workload, readiness(target, "canary", started_seconds_ago=601))
    assert (error.type, error.non_retryable) == (ERR_PROGRESS_DEADLINE, True)
    assert "progressDeadlineSeconds (600s)" in str(error) and "connection refused" in str(error)


async def test_check_ready_reports_the_http_status_of_the_readiness_path(workload: LocalWorkload, seen: Seen) -> None:
    target = local_target(image="v3-bad", readinessPath="/", env={"DEMOAPP_BEHAVIOUR": '{"v3-bad": {"error_rate": 1}}'})
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    seen.now()
    deadline = time.monotonic() + 10
    while "answered HTTP" not in str(error := await not_ready(workload, readiness(target, "canary"))):
        assert "connection refused" in str(error) and time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert error.type == ERR_NOT_READY
    assert "answered HTTP 500" in str(error)


async def test_a_crashed_canary_is_reported_with_its_log_and_not_restarted(workload: LocalWorkload, seen: Seen) -> None:
    target = local_target(image="v2")
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await wait_ready(workload, target, "canary")
    canary_pid = seen.now()["canary"]

    os.kill(canary_pid, signal.SIGKILL)
    for _ in range(2):  # check_ready retries must not hide the crash by restarting the canary
        error = await not_ready(workload, readiness(target, "canary"))
        assert (error.type, error.non_retryable) == (ERR_NOT_READY, False)
        assert f"the canary process (pid {canary_pid}, v2) exited (killed by signal SIGKILL)" in str(error)
        assert "demoapp v2 listening on" in str(error)  # the tail of canary.log
    assert describe(workload.state_dir, NAMESPACE, NAME)["canary"] == {
        "pid": canary_pid,
        "version": "v2",
        "port": ports(target)[1],
        "alive": False,
    }
    assert not process_exists(canary_pid)  # reaped, not a zombie

    error = await not_ready(workload, readiness(target, "canary", started_seconds_ago=601))
    assert (error.type, error.non_retryable) == (ERR_PROGRESS_DEADLINE, True)
    assert "exited" in str(error)

    await workload.scale_to_zero(target)
    assert "canary" not in describe(workload.state_dir, NAMESPACE, NAME)


async def test_an_app_that_exits_at_start_shows_its_exit_status_and_output(workload: LocalWorkload, seen: Seen) -> None:
    script = "import sys; print('cannot open config.toml'); sys.exit(3)"
    target = local_target(image="v2", command=["{python}", "-c", script, "{port}", "{version}"])
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    seen.now()
    deadline = time.monotonic() + 10
    while "exited" not in str(error := await not_ready(workload, readiness(target, "canary"))):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert "(exit status 3)" in str(error)
    assert "cannot open config.toml" in str(error)


async def test_a_restarted_worker_finds_the_running_processes_through_the_state_files(
    workload: LocalWorkload,
    seen: Seen,
) -> None:
    target = local_target(image="v2")
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await wait_ready(workload, target, "primary")
    await wait_ready(workload, target, "canary")
    before = seen.now()

    restarted = LocalWorkload(workload.state_dir)
    await restarted.initialize(target)
    await restarted.scale_from_zero(target)
    await restarted.check_ready(readiness(target, "primary"))
    await restarted.check_ready(readiness(target, "canary"))
    assert seen.now() == before

    await restarted.scale_to_zero(target)
    assert not process_exists(before["canary"])


async def test_initialize_restarts_a_dead_primary_on_the_version_it_last_ran(
    workload: LocalWorkload, seen: Seen
) -> None:
    target = local_target(image="v2")
    primary_port, _ = ports(target)
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await workload.promote(target)
    await workload.scale_to_zero(target)
    old_primary = seen.now()["primary"]

    stop_all(workload.state_dir, NAMESPACE, NAME)  # e.g. `canaryflow dev` stopped, or the machine rebooted
    assert not process_exists(old_primary)
    assert describe(workload.state_dir, NAMESPACE, NAME) == {
        "primary": {"pid": old_primary, "version": "v2", "port": primary_port, "alive": False}
    }

    next_release = target.model_copy(update={"image": "v3"})
    await workload.initialize(next_release)
    await wait_ready(workload, next_release, "primary")
    assert get(primary_port).text == "v2"  # the promoted version, not spec.local.version
    assert seen.now()["primary"] != old_primary


async def test_initialize_stops_a_canary_running_another_version(workload: LocalWorkload, seen: Seen) -> None:
    target = local_target(image="v2")
    _, canary_port = ports(target)
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    old_canary = seen.now()["canary"]

    next_release = target.model_copy(update={"image": "v3"})
    await workload.initialize(next_release)
    assert not process_exists(old_canary)
    assert "canary" not in describe(workload.state_dir, NAMESPACE, NAME)
    await workload.scale_from_zero(next_release)
    await wait_ready(workload, next_release, "canary")
    assert get(canary_port).text == "v3"


async def test_scale_from_zero_replaces_a_canary_whose_env_changed(workload: LocalWorkload, seen: Seen) -> None:
    target = local_target(image="v2")
    _, canary_port = ports(target)
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    old_canary = seen.now()["canary"]

    local = target.canary.spec.local
    assert local is not None
    bad_behaviour = local.model_copy(update={"env": {"DEMOAPP_BEHAVIOUR": '{"v2": {"error_rate": 1}}'}})
    spec = target.canary.spec.model_copy(update={"local": bad_behaviour})
    changed = target.model_copy(update={"canary": target.canary.model_copy(update={"spec": spec})})
    await workload.scale_from_zero(changed)
    await wait_ready(workload, changed, "canary")
    assert not process_exists(old_canary)
    assert get(canary_port).status_code == 500


@pytest.mark.parametrize("identity", ["command line", "start time"])
async def test_a_recorded_pid_now_used_by_another_process_is_never_signalled(
    workload: LocalWorkload, seen: Seen, identity: str
) -> None:
    target = local_target()
    primary_port, _ = ports(target)
    bystander_command = [sys.executable, "-c", "import time; time.sleep(60)"]
    bystander = subprocess.Popen(bystander_command, start_new_session=True)
    try:
        directory = app_dir(workload.state_dir, NAMESPACE, NAME)
        directory.mkdir(parents=True)
        stale: dict[str, Any] = {
            "pid": bystander.pid,
            "version": "v1",
            "port": primary_port,
            "started_at": 1.0,
        }
        if identity == "command line":  # a record without start time: the command line must match
            stale["command"] = [sys.executable, "-m", "canaryflow.demoapp", "--port", str(primary_port)]
        else:  # same pid and command line, but the process started at another time
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            stale.update(command=bystander_command, boot_id=boot_id, start_ticks=1)
        (directory / "primary.json").write_text(json.dumps(stale))
        assert describe(workload.state_dir, NAMESPACE, NAME)["primary"]["alive"] is False

        await workload.initialize(target)
        await wait_ready(workload, target, "primary")
        assert seen.now()["primary"] != bystander.pid
        stop_all(workload.state_dir, NAMESPACE, NAME)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


async def test_a_process_started_just_before_a_worker_crash_is_adopted_not_duplicated(
    workload: LocalWorkload,
    seen: Seen,
) -> None:
    target = local_target()
    primary_port, _ = ports(target)
    command = [sys.executable, "-m", "canaryflow.demoapp", "--port", str(primary_port), "--version", "v1"]
    # The crashed worker had spawned the primary but not yet written primary.json.
    orphan = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        await workload.initialize(target)
        assert seen.now()["primary"] == orphan.pid
        await wait_ready(workload, target, "primary")
        stop_all(workload.state_dir, NAMESPACE, NAME)
        assert orphan.wait(timeout=10) is not None
    finally:
        orphan.kill()
        orphan.wait()


async def test_scale_to_zero_stops_the_whole_process_group(workload: LocalWorkload, seen: Seen) -> None:
    # A canary with a child process of its own: the child stops with it.
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('started', flush=True); time.sleep(60)"
    )
    target = local_target(image="v2", command=["{python}", "-c", script, "{port}", "{version}"])
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    canary_pid = seen.now()["canary"]
    deadline = time.monotonic() + 10
    while not (members := group_members(canary_pid)) or len(members) < 2:
        assert time.monotonic() < deadline, "the canary's child never started"
        await asyncio.sleep(0.02)
    await workload.scale_to_zero(target)
    # The grandchild may linger a moment as a zombie until init reaps it: only running processes count.
    assert group_members(canary_pid) == []


def group_members(group: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except FileNotFoundError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry.name))
    return members


async def test_a_canary_ignoring_sigterm_is_killed_after_the_grace_period(
    workload: LocalWorkload, seen: Seen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "STOP_GRACE_SECONDS", 0.3)
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    target = local_target(image="v2", command=["{python}", "-c", script, "{port}", "{version}"])
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    canary_pid = seen.now()["canary"]
    log = app_dir(workload.state_dir, NAMESPACE, NAME) / "canary.log"
    deadline = time.monotonic() + 10
    while "up" not in log.read_text().splitlines():  # SIGTERM is ignored from here on
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    started = time.monotonic()
    await workload.scale_to_zero(target)
    assert time.monotonic() - started >= 0.3
    assert not process_exists(canary_pid)
    primary_pid = seen.now()["primary"]  # runs the same script: stop it while the grace period is short
    stop_all(workload.state_dir, NAMESPACE, NAME)
    assert not process_exists(primary_pid)


async def test_a_process_behind_an_exec_wrapper_stays_recognised(workload: LocalWorkload, seen: Seen) -> None:
    wrapper = ["sh", "-c", "exec {python} -m canaryflow.demoapp --port {port} --version {version}"]
    target = local_target(image="v2", command=wrapper)
    _, canary_port = ports(target)
    await workload.initialize(target)
    await workload.scale_from_zero(target)
    await wait_ready(workload, target, "canary")  # by now `sh` has become the demo app: another command line
    before = seen.now()
    await workload.scale_from_zero(target)
    await workload.check_ready(readiness(target, "canary"))
    assert seen.now() == before
    assert get(canary_port).text == "v2"
