"""A real Prometheus for tests: temp config and TSDB, a free port on 127.0.0.1, stopped by its pid.

    with PrometheusServer(tmp_path, scrape_configs=[file_sd_scrape_config("apps", targets_file)]) as prometheus:
        ...  # prometheus.url, e.g. http://127.0.0.1:40123

`scrape_interval` defaults to 1 s (the local stack's). `basic_auth` protects the whole server, API included, with
Prometheus' own `--web.config.file`. The binary comes from `apt-get install prometheus`; `prometheus_binary()`
returns None when it is not installed, so tests can skip with a clear reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

INSTALL_HINT = "Prometheus is not installed: apt-get install -y --no-install-recommends prometheus"


@dataclass(frozen=True)
class BasicAuthUser:
    username: str
    password: str
    bcrypt_hash: str  # what Prometheus' web config stores


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def write_file_sd(path: Path, groups: list[dict[str, Any]]) -> Path:
    """Write file_sd target groups (`[{"targets": [...], "labels": {...}}]`) atomically, as the router does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups), encoding="utf-8")
    temporary.replace(path)
    return path


def file_sd_scrape_config(job_name: str, *files: Path) -> dict[str, Any]:
    return {"job_name": job_name, "file_sd_configs": [{"files": [str(f) for f in files], "refresh_interval": "1s"}]}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    def __init__(
        self,
        work_dir: Path,
        scrape_configs: list[dict[str, Any]],
        *,
        scrape_interval: str = "1s",
        basic_auth: BasicAuthUser | None = None,
        startup_timeout_seconds: float = 15.0,
    ) -> None:
        self.work_dir = work_dir
        self.scrape_configs = scrape_configs
        self.scrape_interval = scrape_interval
        self.basic_auth = basic_auth
        self.startup_timeout_seconds = startup_timeout_seconds
        self.port = _free_port()
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "prometheus.log"

    def start(self) -> PrometheusServer:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": self.scrape_configs,
        }
        config_path = self.work_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.work_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
        if self.basic_auth is not None:
            web_config = self.work_dir / "web.yml"
            users = {self.basic_auth.username: self.basic_auth.bcrypt_hash}
            web_config.write_text(yaml.safe_dump({"basic_auth_users": users}), encoding="utf-8")
            command.append(f"--web.config.file={web_config}")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid = self._process.pid
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.kill(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_seconds
        request = urllib.request.Request(f"{self.url}/-/ready")
        if self.basic_auth is not None:
            pair = f"{self.basic_auth.username}:{self.basic_auth.password}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(request, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready after {self.startup_timeout_seconds:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
