"""The workloads of a `LocalApp` target: the primary and the canary as local processes (`spec.local`).

State lives under `<state_dir>/local/<namespace>/<name>/` so a restarted worker finds what is running:
`primary.json` / `canary.json` describe the running process of each role, `canary-desired.json` the version the
canary should run, `primary.log` / `canary.log` hold the apps' output. Processes run in their own session (a
killed worker leaves them alive; stopping signals the whole process group). A recorded pid is trusted only while
`/proc/<pid>` still shows the recorded start time (boot id and start ticks; the command line for a record
without them), so a reused pid is never signalled.

Every operation is idempotent: it compares the recorded state with the wanted one and only acts on the
difference. A process started just before a worker crash, before its state file was written, is adopted on the
next call (found by its exact command line as a session leader) instead of being started twice.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    ERR_INVALID_SPEC,
    ERR_NOT_READY,
    ERR_PROGRESS_DEADLINE,
    ReadinessCheck,
    ReleaseTarget,
)
from canaryflow.spec import LocalAppSpec

Role = Literal["primary", "canary"]
ROLES: tuple[Role, ...] = ("primary", "canary")
STOP_GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 2.0
READINESS_TIMEOUT_SECONDS = 2.0
LOG_TAIL_LINES = 15
_POLL_SECONDS = 0.02

# Popen objects of the processes this worker started, so they are reaped (no zombies) once they exit.
_children: dict[int, subprocess.Popen[bytes]] = {}
_exit_statuses: dict[int, str] = {}
_children_lock = threading.Lock()


def app_dir(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / "local" / namespace / name


@dataclass(frozen=True)
class Launch:
    """What a role's process is started with; a running process whose launch differs is replaced."""

    version: str
    port: int
    command: list[str]
    env: dict[str, str]
    working_dir: str | None


@dataclass(frozen=True)
class ProcessRecord:
    """The content of `<role>.json`."""

    pid: int
    version: str
    port: int
    command: list[str]
    started_at: float
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    # Identity of the process beyond its pid: boot and start time (/proc/<pid>/stat field 22). Unlike the
    # command line, they survive an `exec` wrapper (`sh -c "exec app"`) and a program retitling itself.
    boot_id: str | None = None
    start_ticks: int | None = None

    def runs(self, launch: Launch) -> bool:
        return (self.version, self.port, self.command, self.env, self.working_dir) == (
            launch.version,
            launch.port,
            launch.command,
            launch.env,
            launch.working_dir,
        )


_RECORD_FIELDS = frozenset(ProcessRecord.__dataclass_fields__)


@dataclass(frozen=True)
class _ProcInfo:
    argv: list[str]
    state: str
    process_group: int
    session: int
    start_ticks: int


def _proc_info(pid: int) -> _ProcInfo | None:
    try:
        raw_argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    argv = [part.decode(errors="replace") for part in raw_argv.split(b"\0")[:-1]]
    return _ProcInfo(argv, rest[0], int(rest[2]), int(rest[3]), int(rest[19]))


def _argv_matches(actual: list[str], recorded: list[str]) -> bool:
    if actual == recorded:
        return True
    # A script started through its `#!` line shows as `<interpreter> [args] <script path> <args...>`.
    tail = actual[-len(recorded) :]
    return (
        len(actual) > len(recorded)
        and tail[1:] == recorded[1:]
        and os.path.basename(tail[0]) == os.path.basename(recorded[0])
    )


def _reap(pid: int, *, exiting: bool = False) -> None:
    """Collect the exit status of a child that ended; `exiting`: it is known to be ending, wait for it."""
    with _children_lock:
        child = _children.get(pid)
        if child is None:
            return
        try:
            child.wait(timeout=1.0 if exiting else 0)
        except subprocess.TimeoutExpired:
            return
        del _children[pid]
        _exit_statuses[pid] = _describe_exit(child.returncode)


def _describe_exit(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by signal {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _is_alive(record: ProcessRecord) -> bool:
    """True while the recorded process runs; a pid reused by another process is not it."""
    _reap(record.pid)
    info = _proc_info(record.pid)
    if info is None:
        return False
    if info.state in ("Z", "X") or not info.argv:  # a process that is exiting has no command line any more
        _reap(record.pid, exiting=True)
        return False
    if record.boot_id is not None and record.start_ticks is not None:
        return (record.boot_id, record.start_ticks) == (_boot_id(), info.start_ticks)
    return _argv_matches(info.argv, record.command)


def _group_has_live_members(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = _proc_info(int(entry.name))
            if info is not None and info.process_group == group and info.state not in ("Z", "X"):
                return True
    return False


def _wait_group_gone(group: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        _reap(group)
        if not _group_has_live_members(group):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


def _signal_group(group: int, signum: signal.Signals) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return


def _terminate(leader: int) -> None:
    """SIGTERM to the leader's process group, SIGKILL after the grace period; returns when the group is gone."""
    _signal_group(leader, signal.SIGTERM)
    if not _wait_group_gone(leader, STOP_GRACE_SECONDS):
        _signal_group(leader, signal.SIGKILL)
        _wait_group_gone(leader, KILL_WAIT_SECONDS)
    _reap(leader)


def _has_environment(pid: int, env: dict[str, str]) -> bool:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    found = dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)
    return all(found.get(key) == value for key, value in env.items())


def _find_unrecorded(launch: Launch, recorded: set[int]) -> int | None:
    """A session leader running exactly `launch` that no state file names: started by a worker that crashed
    before recording it. The environment is compared too: roles may differ only by env (`PORT={port}`)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in recorded:
            continue
        pid = int(entry.name)
        info = _proc_info(pid)
        if (
            info is not None
            and info.session == pid
            and info.state not in ("Z", "X")
            and info.argv == launch.command
            and _has_environment(pid, launch.env)
        ):
            return pid
    return None


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 16_384))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _App:
    """The processes of one canary; synchronous, called from worker threads."""

    def __init__(self, directory: Path, spec: LocalAppSpec | None, name: str = "", namespace: str = "") -> None:
        self.directory = directory
        self._spec = spec
        self._name = name
        self._namespace = namespace

    @classmethod
    def of(cls, state_dir: Path, target: ReleaseTarget) -> _App:
        meta = target.canary.metadata
        spec = target.canary.spec.local
        if spec is None:
            raise ApplicationError(
                f"{target.key}: a LocalApp target needs `spec.local` (how to run the app)",
                type=ERR_INVALID_SPEC,
                non_retryable=True,
            )
        return cls(app_dir(state_dir, meta.namespace, meta.name), spec, meta.name, meta.namespace)

    @property
    def spec(self) -> LocalAppSpec:
        assert self._spec is not None, "only providers built from a target start processes"
        return self._spec

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialises changes to one canary's processes, across threads and worker processes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def state_file(self, role: Role) -> Path:
        return self.directory / f"{role}.json"

    def log_file(self, role: Role) -> Path:
        return self.directory / f"{role}.log"

    def record(self, role: Role) -> ProcessRecord | None:
        data = _read_json(self.state_file(role))
        if data is None:
            return None
        return ProcessRecord(**{key: value for key, value in data.items() if key in _RECORD_FIELDS})

    def recorded_pids(self) -> set[int]:
        return {record.pid for role in ROLES if (record := self.record(role)) is not None}

    def desired_canary_version(self) -> str | None:
        data = _read_json(self.directory / "canary-desired.json")
        return str(data["version"]) if data is not None else None

    def record_desired_canary_version(self, version: str) -> None:
        if self.desired_canary_version() != version:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_json_atomically(self.directory / "canary-desired.json", {"version": version})

    def launch(self, role: Role, version: str) -> Launch:
        spec = self.spec
        port = spec.primary_port if role == "primary" else spec.canary_port
        values = {
            "port": str(port),
            "version": version,
            "role": role,
            "python": sys.executable,
            "name": self._name,
            "namespace": self._namespace,
        }
        return Launch(version, port, spec.command_for(values), spec.env_for(values), spec.working_dir)

    def ensure_running(self, role: Role, launch: Launch) -> None:
        """Leave the role's process alone if it runs `launch`, otherwise (re)start it on `launch`."""
        current = self.record(role)
        if current is not None and _is_alive(current) and current.runs(launch):
            return
        self.stop(role)
        self._start(role, launch)

    def stop(self, role: Role, *, forget: bool = True) -> None:
        """Stop the role's process (if it runs) and, with `forget`, remove its state file."""
        current = self.record(role)
        if current is not None:
            if _is_alive(current):
                _terminate(current.pid)
            else:
                _reap(current.pid)
        if forget:
            self.state_file(role).unlink(missing_ok=True)

    def stop_unrecorded(self, launch: Launch) -> None:
        pid = _find_unrecorded(launch, self.recorded_pids())
        if pid is not None:
            _terminate(pid)

    def _start(self, role: Role, launch: Launch) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        pid = _find_unrecorded(launch, self.recorded_pids()) or self._spawn(role, launch)
        info = _proc_info(pid)
        record = ProcessRecord(
            pid=pid,
            version=launch.version,
            port=launch.port,
            command=launch.command,
            started_at=time.time(),
            env=launch.env,
            working_dir=launch.working_dir,
            boot_id=_boot_id(),
            start_ticks=info.start_ticks if info is not None else None,
        )
        _write_json_atomically(self.state_file(role), asdict(record))

    def _spawn(self, role: Role, launch: Launch) -> int:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with self.log_file(role).open("ab") as log:
            log.write(f"--- {stamp} canaryflow starts the {role} on {launch.version}: ".encode())
            log.write(f"{shlex.join(launch.command)}\n".encode())
            log.flush()
            try:
                child = subprocess.Popen(
                    launch.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=launch.working_dir,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **launch.env},
                    start_new_session=True,
                )
            except OSError as error:
                raise ApplicationError(
                    f"cannot start the {role} `{shlex.join(launch.command)}`: {error}",
                    type=ERR_INVALID_SPEC,
                    non_retryable=True,
                ) from error
        with _children_lock:
            _children[child.pid] = child
            _exit_statuses.pop(child.pid, None)
        return child.pid


def _refused(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _exit_description(pid: int) -> str:
    with _children_lock:
        status = _exit_statuses.get(pid)
    return f" ({status})" if status else ""


class LocalWorkload:
    """`WorkloadProvider` for `LocalApp` targets (activities/workloads/base.py)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @staticmethod
    def canary_version(target: ReleaseTarget) -> str:
        local = target.canary.spec.local
        return target.image or (local.version if local is not None else "")

    async def initialize(self, target: ReleaseTarget) -> None:
        await asyncio.to_thread(self._initialize, target)

    def _initialize(self, target: ReleaseTarget) -> None:
        app = _App.of(self.state_dir, target)
        wanted_canary = app.launch("canary", self.canary_version(target))
        with app.locked():
            app.record_desired_canary_version(wanted_canary.version)
            primary = app.record("primary")
            if primary is None or not _is_alive(primary):
                version = primary.version if primary is not None else app.spec.version
                app.ensure_running("primary", app.launch("primary", version))
            canary = app.record("canary")
            if canary is not None and not canary.runs(wanted_canary):
                app.stop("canary")

    async def check_ready(self, check: ReadinessCheck) -> None:
        app = _App.of(self.state_dir, check.target)
        role: Role = check.workload
        reason, show_log = await self._not_ready_reason(app, role)
        if reason is None:
            return
        key = check.target.key
        deadline = check.rollout_started_at + check.progress_deadline_seconds
        past_deadline = check.rollout_started_at > 0 and time.time() >= deadline
        tail = _log_tail(app.log_file(role)) if show_log or past_deadline else ""
        details = f"\nlast lines of {app.log_file(role)}:\n{tail}" if tail else ""
        if past_deadline:
            raise ApplicationError(
                f"{key}: the {role} is not ready after progressDeadlineSeconds "
                f"({check.progress_deadline_seconds}s): {reason}{details}",
                type=ERR_PROGRESS_DEADLINE,
                non_retryable=True,
            )
        raise ApplicationError(f"{key}: the {role} is not ready: {reason}{details}", type=ERR_NOT_READY)

    async def _not_ready_reason(self, app: _App, role: Role) -> tuple[str | None, bool]:
        """(why the role is not ready, whether its log explains it), or (None, False) when it is ready."""
        record = await asyncio.to_thread(app.record, role)
        if record is None:
            return f"no {role} process is running (scaled to zero or never started)", False
        if not await asyncio.to_thread(_is_alive, record):
            exit_status = _exit_description(record.pid)
            return f"the {role} process (pid {record.pid}, {record.version}) exited{exit_status}", True
        url = f"http://127.0.0.1:{record.port}{app.spec.readiness_path}"
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=READINESS_TIMEOUT_SECONDS) as client:
                response = await client.get(url)
        except httpx.ConnectError as error:
            # A process being killed closes its socket before /proc shows it gone: look again after a moment.
            await asyncio.sleep(0.2)
            if not await asyncio.to_thread(_is_alive, record):
                exit_status = _exit_description(record.pid)
                return f"the {role} process (pid {record.pid}, {record.version}) exited{exit_status}", True
            return f"GET {url}: {'connection refused' if _refused(error) else error}", False
        except httpx.TimeoutException:
            return f"GET {url}: no answer within {READINESS_TIMEOUT_SECONDS:g}s", False
        except httpx.HTTPError as error:
            return f"GET {url}: {error or type(error).__name__}", False
        if response.is_success:
            return None, False
        return f"GET {url} answered HTTP {response.status_code}", False

    async def scale_from_zero(self, target: ReleaseTarget) -> None:
        await asyncio.to_thread(self._scale_from_zero, target)

    def _scale_from_zero(self, target: ReleaseTarget) -> None:
        app = _App.of(self.state_dir, target)
        with app.locked():
            app.ensure_running("canary", app.launch("canary", self.canary_version(target)))

    async def scale_to_zero(self, target: ReleaseTarget) -> None:
        await asyncio.to_thread(self._scale_to_zero, target)

    def _scale_to_zero(self, target: ReleaseTarget) -> None:
        app = _App.of(self.state_dir, target)
        with app.locked():
            app.stop("canary")
            app.stop_unrecorded(app.launch("canary", self.canary_version(target)))

    async def promote(self, target: ReleaseTarget) -> None:
        await asyncio.to_thread(self._promote, target)

    def _promote(self, target: ReleaseTarget) -> None:
        # The router keeps sending traffic to the canary while the primary restarts (Flagger's order).
        app = _App.of(self.state_dir, target)
        with app.locked():
            app.ensure_running("primary", app.launch("primary", self.canary_version(target)))


def stop_all(state_dir: Path, namespace: str, name: str) -> None:
    """Stop both roles of a canary (the stack supervisor's shutdown).

    The canary's state is removed; the primary's is kept (marked by its dead pid), so the next `initialize`
    restarts the primary on the version it last ran, which may be a promoted one.
    """
    app = _App(app_dir(state_dir, namespace, name), None)
    if not app.directory.is_dir():
        return
    with app.locked():
        app.stop("canary")
        app.stop("primary", forget=False)


def describe(state_dir: Path, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """role -> {pid, version, port, alive} for every role with recorded state (for status output)."""
    app = _App(app_dir(state_dir, namespace, name), None)
    described: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        record = app.record(role)
        if record is not None:
            described[role] = {
                "pid": record.pid,
                "version": record.version,
                "port": record.port,
                "alive": _is_alive(record),
            }
    return described
