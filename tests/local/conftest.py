"""Fixtures for local-platform tests: tiny backend HTTP servers and short state directories.

`RoleServer` is a stdlib HTTP/1.1 server on 127.0.0.1 that answers every path with its role name (header
`X-Role` too), answers `/readyz` with 200 without recording it, and records every other request (method, path,
headers, body) so tests can see what reached it, e.g. mirrored copies. `stop()` closes the listening socket,
like an app restarting.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy resets connections it is done with (health checks, stop); not a test failure


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RoleServer:
    role: str
    port: int = field(default_factory=free_port)
    requests: list[RecordedRequest] = field(default_factory=list)
    _server: _QuietServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RoleServer:
        server = _QuietServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=server.serve_forever, args=(0.05,), name=f"role-{self.role}", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        role_server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # keep-alive through HAProxy is 40 ms per request otherwise

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path != "/readyz":
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    role_server._record(RecordedRequest(self.command, self.path, headers, body))
                payload = role_server.role.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Role", role_server.role)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        return Handler


@pytest.fixture
def role_servers() -> Iterator[dict[str, RoleServer]]:
    """Running `primary` and `canary` servers on free ports."""
    servers = {role: RoleServer(role).start() for role in ("primary", "canary")}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    """A state directory under /tmp with a short path: HAProxy's unix sockets must fit in 107 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="cf-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
