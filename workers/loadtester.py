"""A load-testing webhook runner with Flagger's loadtester semantics, for `rollout` webhooks.

POST / with Flagger's webhook payload; `metadata.type` (default `cmd`):
- `cmd`: run `sh -c <metadata.cmd>` asynchronously; a command still running for the same canary is not started
  again (deduplicated by canary + command), so a load test spanning several intervals keeps going. Answers 202.
- `bash`: run `bash -c <metadata.cmd>` and wait; 200 on exit 0, 500 with the output otherwise
  (`returnCmdOutput: "true"` echoes the output on success too).
Also `/gate/approve` (200), `/gate/halt` (403), `/gate/check|open|close` and `/rollback/check|open|close` keyed by
`<name>.<namespace>` like Flagger's, and `/healthz`. Gate state is in memory, as in Flagger; canaryflow's own gates
(`canaryflow approve`, `url: manual`) are durable and should be preferred.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("canaryflow.loadtester")
DEFAULT_TIMEOUT_SECONDS = 3600.0


@dataclass
class LoadTester:
    command_timeout: float = DEFAULT_TIMEOUT_SECONDS
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    gates: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run_async(self, canary: str, command: str) -> bool:
        """Start `sh -c command` unless the same command for the same canary is still running. True if started."""
        key = hashlib.sha256(f"{canary}\0{command}".encode()).hexdigest()
        with self.lock:
            process = self.running.get(key)
            if process is not None and process.poll() is None:
                return False
            self.running[key] = subprocess.Popen(
                ["sh", "-c", command],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.info("started %s for %s", command, canary)
            return True

    def run_blocking(self, command: str) -> tuple[bool, str]:
        try:
            done = subprocess.run(
                ["bash", "-c", command], capture_output=True, timeout=self.command_timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {self.command_timeout:g}s"
        output = (done.stdout + done.stderr).decode(errors="replace")
        return done.returncode == 0, output

    def stop_all(self) -> None:
        with self.lock:
            for process in self.running.values():
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)  # the shell and the load tool it started
                    process.wait()
            self.running.clear()


def _handler(tester: LoadTester) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, "OK")
            else:
                self._answer(404, "not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("payload is not an object")
            except ValueError as error:
                self._answer(400, f"bad payload: {error}")
                return
            canary = f"{payload.get('name', '')}.{payload.get('namespace', '')}"
            path = self.path.rstrip("/") or "/"
            if path == "/":
                self._task(payload, canary)
            elif path in ("/gate/approve", "/gate/halt"):
                self._answer(200 if path.endswith("approve") else 403, path.rsplit("/", 1)[1])
            elif path.startswith(("/gate/", "/rollback/")):
                self._gate(path, canary)
            else:
                self._answer(404, "not found")

        def _gate(self, path: str, canary: str) -> None:
            kind, verb = path.strip("/").split("/", 1)
            key = canary if kind == "gate" else f"rollback.{canary}"
            if verb in ("open", "close"):
                with tester.lock:
                    tester.gates[key] = verb == "open"
                self._answer(200, f"{kind} {verb}ed")
            elif verb == "check":
                opened = tester.gates.get(key, False)
                self._answer(200 if opened else 403, "Approved" if opened else "Forbidden")
            else:
                self._answer(404, "not found")

        def _task(self, payload: dict[str, Any], canary: str) -> None:
            metadata = payload.get("metadata") or {}
            command = metadata.get("cmd", "")
            kind = metadata.get("type", "cmd")
            if not command:
                self._answer(400, "metadata.cmd is required")
                return
            if kind == "cmd":
                started = tester.run_async(canary, command)
                self._answer(202, "started" if started else "already running")
            elif kind == "bash":
                ok, output = tester.run_blocking(command)
                echo = metadata.get("returnCmdOutput") == "true"
                self._answer(200 if ok else 500, output if (echo or not ok) else "ok")
            else:
                self._answer(400, f"unsupported task type {kind!r}; use cmd or bash")

    return Handler


def serve(host: str, port: int, tester: LoadTester | None = None) -> ThreadingHTTPServer:
    """Bind and return the server (call `serve_forever()`); one `LoadTester` holds the running commands."""
    server = ThreadingHTTPServer((host, port), _handler(tester or LoadTester()))
    server.daemon_threads = True
    return server


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description="canaryflow load tester (Flagger loadtester semantics)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9491)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="bash task timeout (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tester = LoadTester(command_timeout=args.timeout)
    server = serve(args.host, args.port, tester)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        tester.stop_all()
        server.server_close()


if __name__ == "__main__":
    main()
