"""The local stack supervisor: `canaryflow local up|down|status`.

Runs, on loopback and under `CANARYFLOW_STATE_DIR`: the embedded Temporal dev server (Web UI), Prometheus
(scraping the targets the HAProxy router writes, and the worker), the load tester, and a canaryflow worker. Every
process gets its own session, a pid file and a log file, so `down` stops exactly what `up` started. Per-canary
HAProxies and app processes are started by the release activities and stopped by `down`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from canaryflow.devserver import DevServer
from canaryflow.settings import Settings


class StackError(OSError):
    pass


@dataclass(frozen=True)
class ManagedProcess:
    """A background process identified by its pid file; the pid is trusted only while its cmdline matches."""

    name: str
    argv: list[str]
    directory: Path
    env: dict[str, str] | None = None

    @property
    def pid_file(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        expected = [arg.encode() for arg in self.argv[:3]]
        return pid if cmdline[: len(expected)] == expected else None

    def start(self) -> int:
        running = self.pid()
        if running is not None:
            return running
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        # Until the child has exec'd, /proc shows the parent's command line: wait for it, or for an early exit.
        deadline = time.monotonic() + 5.0
        while self.pid() is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return process.pid

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap our own child so it doesn't linger as a zombie
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_http(url: str, what: str, process: ManagedProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.pid() is None:
            raise StackError(f"{what} exited during startup; last log lines:\n{process.log_tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StackError(f"{what} did not answer {url} within {timeout:g}s; last log lines:\n{process.log_tail()}")


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.state_dir
        self.prometheus_dir = self.root / "prometheus"
        metrics = urlparse(settings.metrics_server)
        self.prometheus_port = metrics.port or 9490
        self.temporal = DevServer(settings)

    # Processes -------------------------------------------------------------------------------------------------

    def prometheus(self) -> ManagedProcess:
        return ManagedProcess(
            "prometheus",
            [
                "prometheus",
                f"--config.file={self.prometheus_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.prometheus_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=6h",
                "--web.enable-lifecycle",
            ],
            self.root,
        )

    def loadtester(self) -> ManagedProcess:
        argv = [sys.executable, "-m", "workers.loadtester", "--port", str(self.settings.loadtester_port)]
        return ManagedProcess("loadtester", argv, self.root)

    def worker(self) -> ManagedProcess:
        env = {
            "TEMPORAL_ADDRESS": self.temporal.address,
            "CANARYFLOW_STATE_DIR": str(self.root),
            "CANARYFLOW_TASK_QUEUE": self.settings.task_queue,
            "CANARYFLOW_METRICS_SERVER": self.settings.metrics_server,
            "CANARYFLOW_WORKER_METRICS_BIND": self.settings.worker_metrics_bind or "127.0.0.1:9466",
        }
        return ManagedProcess("worker", [sys.executable, "-m", "workers.worker"], self.root, env)

    def _write_prometheus_config(self) -> None:
        targets = self.prometheus_dir / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        worker_bind = self.settings.worker_metrics_bind or "127.0.0.1:9466"
        config = f"""# written by `canaryflow local up`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: canaryflow-targets
    file_sd_configs:
      - files: ["{targets}/*.json"]
        refresh_interval: 1s
  - job_name: canaryflow-worker
    static_configs:
      - targets: ["{worker_bind}"]
"""
        (self.prometheus_dir / "prometheus.yml").write_text(config)

    # Commands --------------------------------------------------------------------------------------------------

    def up(self) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_prometheus_config()
        if self.temporal.running_pid() is None:
            self.temporal.start()
        prometheus = self.prometheus()
        prometheus.start()
        _wait_http(f"http://127.0.0.1:{self.prometheus_port}/-/ready", "Prometheus", prometheus)
        loadtester = self.loadtester()
        loadtester.start()
        _wait_http(f"http://127.0.0.1:{self.settings.loadtester_port}/healthz", "load tester", loadtester)
        worker = self.worker()
        worker.start()
        time.sleep(1.0)
        if worker.pid() is None:
            raise StackError(f"the worker exited during startup; last log lines:\n{worker.log_tail()}")
        return self.status()

    def down(self) -> list[str]:
        stopped = []
        for process in (self.worker(), self.loadtester()):
            if process.stop():
                stopped.append(process.name)
        stopped.extend(self._stop_canaries())
        if self.prometheus().stop():
            stopped.append("prometheus")
        if self.temporal.stop():
            stopped.append("temporal")
        return stopped

    def _stop_canaries(self) -> list[str]:
        from activities.routers.haproxy import stop_router
        from activities.workloads.local import stop_all

        stopped = []
        local = self.root / "local"
        for canary_dir in sorted(local.glob("*/*")) if local.exists() else []:
            namespace, name = canary_dir.parent.name, canary_dir.name
            stop_router(self.root, namespace, name)
            stop_all(self.root, namespace, name)
            stopped.append(f"{namespace}/{name}")
        return stopped

    def status(self) -> dict[str, str]:
        def show(pid: int | None, address: str) -> str:
            return f"running (pid {pid}) {address}" if pid else "stopped"

        return {
            "temporal": show(self.temporal.running_pid(), f"{self.temporal.address} UI {self.temporal.ui_url}"),
            "prometheus": show(self.prometheus().pid(), f"http://127.0.0.1:{self.prometheus_port}"),
            "loadtester": show(self.loadtester().pid(), f"http://127.0.0.1:{self.settings.loadtester_port}"),
            "worker": show(self.worker().pid(), f"task queue {self.settings.task_queue}"),
        }
