"""The HAProxy router of the local platform: one HAProxy (master-worker) per canary, driven by its runtime API.

- `reconcile` writes haproxy.cfg (validated with `haproxy -c`), starts HAProxy in its own session if it is not
  running (so a SIGKILLed worker leaves it serving), reloads it (USR2 to the master) when the config changed after
  dumping the server state so weights survive, and writes the Prometheus file_sd target file.
- `set_routes` changes weights and the runtime maps over the unix socket, without a reload. When a server comes
  back from weight 0 it is set first and the other one is bounced (maint/ready): roundrobin starves it otherwise.
  A/B (`analysis.match`) pins matching requests to the canary while the canary weight is > 0; session affinity sets
  and expires the canary cookie; mirroring copies requests to the canary with a Lua action (fire and forget).
- `get_routes` reads the live weights (for A/B, the requested ones kept in the routes map).
- `finalize` stops HAProxy and removes the target file; `stop_router` only stops it (for the stack supervisor).

Files: see `haproxy_config.HAProxyPaths`. Errors talking to HAProxy are retryable ApplicationErrors; a spec the
router cannot express is a non-retryable `InvalidSpec`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, ReleaseTarget, Routes, SetRoutes
from activities.routers import haproxy_config as hc
from canaryflow.spec import Canary

ERR_HAPROXY = "HAProxyError"  # retryable: HAProxy is not reachable, not installed, or refused a command
INSTALL_HINT = "apt-get install -y --no-install-recommends haproxy"
START_TIMEOUT_SECONDS = 5.0
RELOAD_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 5.0
SOCKET_TIMEOUT_SECONDS = 5.0

T = TypeVar("T")

# Children started by this process, so they can be reaped (no zombies while the worker lives).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class HAProxyFailure(RuntimeError):
    """HAProxy could not be started, reloaded or driven; retrying may help."""


def _invalid_spec(target_key: str, error: hc.ConfigError) -> ApplicationError:
    return ApplicationError(f"{target_key}: {error}", type=ERR_INVALID_SPEC, non_retryable=True)


def _haproxy_error(target_key: str, error: Exception) -> ApplicationError:
    return ApplicationError(f"{target_key}: {error}", type=ERR_HAPROXY)


# ----------------------------------------------------------------------------------------------------
# Files and processes


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        _write_atomic(path, text)


@contextmanager
def _locked(paths: hc.HAProxyPaths) -> Iterator[None]:
    """Serialize everything touching one canary's HAProxy, across threads and worker processes."""
    paths.directory.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_alive(pid: int) -> bool:
    """True for a live (non-zombie) process; reaps our own exited children."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def running_pid(paths: hc.HAProxyPaths) -> int | None:
    """The master pid from the pid file, trusted only if that process is HAProxy running our config."""
    try:
        pid = int(paths.pid.read_text().strip())
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    is_haproxy = Path(os.fsdecode(arguments[0])).name.startswith("haproxy")
    if is_haproxy and os.fsencode(str(paths.config)) in arguments and _is_alive(pid):
        return pid
    return None


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return True
        time.sleep(0.05)
    return not _is_alive(pid)


def _stop(paths: hc.HAProxyPaths) -> bool:
    """Stop the canary's HAProxy (master and workers: its whole process group). True if one was running."""
    pid = running_pid(paths)
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if _wait_gone(pid, STOP_TIMEOUT_SECONDS):
                break
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with suppress(subprocess.TimeoutExpired):  # still dying: Popen reaps it later
                child.wait(timeout=1)
    for leftover in (paths.pid, paths.socket, paths.mirror_socket):
        leftover.unlink(missing_ok=True)
    return pid is not None


def _log_tail(paths: hc.HAProxyPaths, lines: int = 8) -> str:
    try:
        tail = paths.log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in tail) or "(empty log)"


# ----------------------------------------------------------------------------------------------------
# Runtime API


def runtime_command(paths: hc.HAProxyPaths, command: str) -> str:
    """Send one command line (several commands separated by `;`) to the stats socket and return the output."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(SOCKET_TIMEOUT_SECONDS)
            connection.connect(str(paths.socket))
            connection.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError as error:
        raise HAProxyFailure(f"HAProxy runtime API at {paths.socket} is not reachable: {error}") from error
    return b"".join(chunks).decode(errors="replace")


def _run_silent_commands(paths: hc.HAProxyPaths, commands: list[str]) -> None:
    """Run commands that print nothing on success; any output is HAProxy refusing one of them."""
    output = runtime_command(paths, "; ".join(commands)).strip()
    if output:
        raise HAProxyFailure(f"HAProxy refused `{'; '.join(commands)}`: {output}")


def _worker_pid(paths: hc.HAProxyPaths) -> int:
    for line in runtime_command(paths, "show info").splitlines():
        if line.startswith("Pid:"):
            return int(line.split(":", 1)[1])
    raise HAProxyFailure("HAProxy's `show info` has no Pid line")


def _get_weights(paths: hc.HAProxyPaths) -> dict[str, int]:
    servers = (hc.PRIMARY, hc.CANARY)
    output = runtime_command(paths, "; ".join(f"get weight {hc.BACKEND}/{server}" for server in servers))
    answers = [block.strip() for block in output.strip().split("\n\n")]
    weights: dict[str, int] = {}
    for server, answer in zip(servers, answers, strict=False):
        first = answer.split(" ", 1)[0]
        if not first.isdigit():
            raise HAProxyFailure(f"HAProxy answered `{answer}` to `get weight {hc.BACKEND}/{server}`")
        weights[server] = int(first)
    if len(weights) != len(servers):
        raise HAProxyFailure(f"unexpected `get weight` output: {output!r}")
    return weights


def _dump_server_state(paths: hc.HAProxyPaths, ports: dict[str, int]) -> None:
    state = runtime_command(paths, f"show servers state {hc.BACKEND}")
    if not state.strip().startswith("1"):
        raise HAProxyFailure(f"unexpected `show servers state` output: {state.strip()[:200]!r}")
    _write_atomic(paths.state, hc.rewrite_server_state(state, ports))


# ----------------------------------------------------------------------------------------------------
# Start, reload, validate


def _haproxy_binary(configured: str | None) -> str:
    if configured:
        return configured
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise HAProxyFailure(f"HAProxy is not installed: {INSTALL_HINT}")
    return found


def _validate(binary: str, paths: hc.HAProxyPaths, config: str) -> None:
    _write_atomic(paths.candidate_config, config)
    try:
        checked = subprocess.run(
            [binary, "-c", "-f", str(paths.candidate_config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HAProxyFailure(f"`haproxy -c` failed to run: {error}") from error
    if checked.returncode != 0:
        alerts = [line for line in (checked.stdout + checked.stderr).splitlines() if "ALERT" in line]
        detail = " | ".join(alerts) or (checked.stdout + checked.stderr).strip()
        raise hc.ConfigError(f"HAProxy rejects the generated configuration: {detail}")


def _start(binary: str, paths: hc.HAProxyPaths) -> None:
    with open(paths.log, "ab") as log:
        child = subprocess.Popen(
            [binary, "-W", "-db", "-f", str(paths.config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.directory,
            start_new_session=True,  # survives a SIGKILLed worker; killpg(pid) stops master and workers
        )
    _CHILDREN[child.pid] = child
    _write_atomic(paths.pid, f"{child.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if child.poll() is not None:
            _CHILDREN.pop(child.pid, None)
            paths.pid.unlink(missing_ok=True)
            raise HAProxyFailure(f"HAProxy exited at start with code {child.returncode}: {_log_tail(paths)}")
        try:
            _worker_pid(paths)
            return
        except (HAProxyFailure, ValueError):
            if time.monotonic() > deadline:
                _stop(paths)
                raise HAProxyFailure(
                    f"HAProxy did not open its runtime API within {START_TIMEOUT_SECONDS:g}s: {_log_tail(paths)}"
                ) from None
            time.sleep(0.05)


def _reload(master: int, paths: hc.HAProxyPaths) -> None:
    old_worker = _worker_pid(paths)
    os.kill(master, signal.SIGUSR2)
    deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if _worker_pid(paths) != old_worker:
                return
        except (HAProxyFailure, ValueError):
            pass  # the new worker is replacing the socket
        time.sleep(0.05)
    raise HAProxyFailure(f"HAProxy did not reload within {RELOAD_TIMEOUT_SECONDS:g}s: {_log_tail(paths)}")


def _server_ports(canary: Canary) -> dict[str, int]:
    local = hc.local_spec(canary)
    return {hc.PRIMARY: local.primary_port, hc.CANARY: local.canary_port}


def _ensure(binary: str, paths: hc.HAProxyPaths, canary: Canary) -> None:
    """HAProxy running with the config the spec asks for; started or reloaded only if needed."""
    config = hc.render_config(canary, paths)
    master = running_pid(paths)
    current = paths.config.read_text(encoding="utf-8") if paths.config.exists() else None
    if master is not None and current == config:
        return
    paths.directory.mkdir(parents=True, exist_ok=True)
    if hc.mirror_configured(canary):
        _write_if_changed(paths.mirror_lua, hc.MIRROR_LUA)
    if not paths.routes_map.exists():
        _write_atomic(paths.routes_map, hc.render_map(hc.default_routes_map()))
    if not paths.cookies_map.exists():
        _write_atomic(paths.cookies_map, "")
    _validate(binary, paths, config)
    ports = _server_ports(canary)
    if master is None:
        if paths.state.exists():  # weights of an earlier run; the ports must be today's
            _write_atomic(paths.state, hc.rewrite_server_state(paths.state.read_text(), ports))
        os.replace(paths.candidate_config, paths.config)
        _start(binary, paths)
    else:
        _dump_server_state(paths, ports)
        os.replace(paths.candidate_config, paths.config)
        _reload(master, paths)


# ----------------------------------------------------------------------------------------------------
# The router


class HAProxyRouter:
    """`Router` for `provider: haproxy` (local platform). `state_dir` is CANARYFLOW_STATE_DIR."""

    def __init__(self, state_dir: Path, haproxy_binary: str | None = None) -> None:
        self._state_dir = state_dir
        self._binary = haproxy_binary

    def paths(self, canary: Canary) -> hc.HAProxyPaths:
        return hc.haproxy_paths(self._state_dir, canary.metadata.namespace, canary.metadata.name)

    async def reconcile(self, target: ReleaseTarget) -> None:
        await asyncio.to_thread(self._guarded, target, self._reconcile)

    async def set_routes(self, request: SetRoutes) -> None:
        await asyncio.to_thread(self._guarded, request.target, lambda target: self._set_routes(request))

    async def get_routes(self, target: ReleaseTarget) -> Routes:
        routes: Routes = await asyncio.to_thread(self._guarded, target, self._get_routes)
        return routes

    async def finalize(self, target: ReleaseTarget) -> None:
        await asyncio.to_thread(self._guarded, target, self._finalize)

    def _guarded(self, target: ReleaseTarget, action: Callable[[ReleaseTarget], T]) -> T:
        """Run `action` under the canary's lock, turning failures into the ApplicationErrors Temporal needs."""
        paths = self.paths(target.canary)
        try:
            with _locked(paths):
                return action(target)
        except hc.ConfigError as error:
            raise _invalid_spec(target.key, error) from error
        except (HAProxyFailure, OSError) as error:
            raise _haproxy_error(target.key, error) from error

    def _reconcile(self, target: ReleaseTarget) -> None:
        paths = self.paths(target.canary)
        _ensure(_haproxy_binary(self._binary), paths, target.canary)
        _write_if_changed(paths.targets_file, hc.render_targets(target.canary))

    def _set_routes(self, request: SetRoutes) -> None:
        canary = request.target.canary
        paths = self.paths(canary)
        routes, affinity = request.routes, request.session_affinity
        wanted = hc.runtime_routes(
            canary,
            routes.primary_weight,
            routes.canary_weight,
            routes.mirrored,
            cookie_value=affinity.cookie_value if affinity else "",
            cookie_max_age=affinity.max_age if affinity else 0,
            previous_cookie=affinity.previous_cookie if affinity else "",
            primary_cookie_value=affinity.primary_cookie_value if affinity else "",
        )
        _ensure(_haproxy_binary(self._binary), paths, canary)
        # On disk first: a reload or restart loads the maps from these files.
        _write_atomic(paths.routes_map, hc.render_map(wanted.routes))
        _write_atomic(paths.cookies_map, hc.render_map(wanted.cookies))
        new = {hc.PRIMARY: wanted.primary_weight, hc.CANARY: wanted.canary_weight}
        commands = hc.weight_commands(_get_weights(paths), new)
        for map_path in hc.maps_in_use(canary, paths):
            entries = wanted.routes if map_path == paths.routes_map else wanted.cookies
            commands.append(f"clear map {map_path}")
            commands += [f"add map {map_path} {key} {value}" for key, value in entries.items()]
        _run_silent_commands(paths, commands)
        _dump_server_state(paths, _server_ports(canary))  # a restart (not only a reload) keeps the weights

    def _get_routes(self, target: ReleaseTarget) -> Routes:
        paths = self.paths(target.canary)
        if running_pid(paths) is None:
            raise HAProxyFailure(f"HAProxy is not running (pid file {paths.pid}); reconcile starts it")
        entries = hc.default_routes_map()
        if paths.routes_map in hc.maps_in_use(target.canary, paths):
            entries |= hc.parse_map(runtime_command(paths, f"show map {paths.routes_map}"))
        mirrored = entries.get("mirror") == "1"
        if hc.uses_ab_testing(target.canary):
            # The servers stay at 100/0 in A/B; the routes are the weights of the matching requests.
            primary, canary = int(entries["route_primary"]), int(entries["route_canary"])
            return Routes(primary_weight=primary, canary_weight=canary, mirrored=mirrored)
        weights = _get_weights(paths)
        return Routes(primary_weight=weights[hc.PRIMARY], canary_weight=weights[hc.CANARY], mirrored=mirrored)

    def _finalize(self, target: ReleaseTarget) -> None:
        paths = self.paths(target.canary)
        _stop(paths)
        paths.targets_file.unlink(missing_ok=True)


def stop_router(state_dir: Path, namespace: str, name: str) -> bool:
    """Stop the HAProxy of one canary (for the stack supervisor). True if one was running."""
    paths = hc.haproxy_paths(state_dir, namespace, name)
    if not paths.directory.exists():
        return False
    with _locked(paths):
        return _stop(paths)
