"""A real HTTP server for tests: records every request and answers with scripted responses.

    with HttpReceiver() as receiver:
        receiver.script(ScriptedResponse(status=500, body="boom"), ScriptedResponse(status=200))
        ...  # point the code under test at receiver.url_for("/hook")
        assert receiver.requests[0].json == {...}

Scripted responses are consumed in order; once they run out every request gets `default`. A `handler`
callable, when given, decides every response itself (useful for fakes that answer by path or body).
It runs `ThreadingHTTPServer` in a background thread bound to 127.0.0.1 on a free port, so it serves
both synchronous and asyncio clients. Pass `ssl_context` (a server-side context) to serve HTTPS.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class ScriptedResponse:
    status: int = 200
    body: str | bytes | dict[str, Any] | list[Any] = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # wait this long before answering (for timeout tests)

    def encoded_body(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


Handler = Callable[[RecordedRequest], ScriptedResponse]


class HttpReceiver:
    def __init__(
        self,
        *scripted: ScriptedResponse,
        default: ScriptedResponse | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.default = default or ScriptedResponse()
        self.handler: Handler | None = None
        self._scripted: deque[ScriptedResponse] = deque(scripted)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.receiver = self
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="http-receiver",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        return f"{self.url}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue responses for the next requests, after any still queued."""
        with self._lock:
            self._scripted.extend(responses)

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers still sleeping on a scripted delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record_and_choose(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self._requests.append(request)
            if self.handler is None and self._scripted:
                return self._scripted.popleft()
        return self.handler(request) if self.handler is not None else self.default


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: HttpReceiver


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        response = receiver._record_and_choose(request)
        if response.delay_seconds and receiver._stopping.wait(response.delay_seconds):
            return
        payload, content_type = response.encoded_body()
        try:
            self.send_response(response.status)
            headers = {"Content-Type": content_type, **response.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            if response.status not in (204, 304) and response.status >= 200:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if response.status not in (204, 304):
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired); nothing left to answer

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean
