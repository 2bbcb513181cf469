"""The demo app of the local platform: one HTTP server per version, with knobs to make a version bad.

`python -m canaryflow.demoapp --port P --version V [--error-rate R] [--latency-ms MS]` serves on 127.0.0.1:
- any path but the ones below: 200 with body `V` (or 500 with probability R), after MS ms; header `X-Version: V`;
- `/healthz`, `/readyz`: 200 `ok`;
- `/metrics`: Prometheus text: `http_requests_total{status}`, the histogram `http_request_duration_seconds`
  (`_bucket{status,le}`, `_sum`, `_count`) and `demoapp_info{version}`; only app requests are counted;
- `/admin?error_rate=R&latency_ms=MS`: changes the behaviour live and answers it as JSON.
`DEMOAPP_BEHAVIOUR` (JSON `{"<version>": {"error_rate": R, "latency_ms": MS}}`) gives per-version defaults, so
a bad release is just another version string; command-line knobs override it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
BEHAVIOUR_ENV = "DEMOAPP_BEHAVIOUR"
# Bounds just above typical latency SLOs (100-250 ms): histogram_quantile interpolates to the upper bound.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
)
# Always exported, so the first error already shows as an increase from 0 in `rate()`.
_PRESET_STATUSES = ("200", "500")
_PLAIN_PATHS = {"/healthz": "ok", "/readyz": "ok"}


@dataclass
class Behaviour:
    error_rate: float = 0.0
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, got {self.error_rate}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be 0 or more, got {self.latency_ms}")


def behaviour_for(version: str, environ: Mapping[str, str]) -> Behaviour:
    """The defaults `DEMOAPP_BEHAVIOUR` sets for `version` (a healthy app when it names no such version)."""
    raw = environ.get(BEHAVIOUR_ENV, "").strip()
    if not raw:
        return Behaviour()
    table = json.loads(raw)
    if not isinstance(table, dict):
        raise ValueError(f"{BEHAVIOUR_ENV} must be a JSON object keyed by version")
    entry = table.get(version) or {}
    return Behaviour(error_rate=float(entry.get("error_rate", 0.0)), latency_ms=float(entry.get("latency_ms", 0.0)))


class _Histogram:
    """Request counts and durations by status; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        for status in _PRESET_STATUSES:
            self._series(status)

    def _series(self, status: str) -> list[int]:
        if status not in self._buckets:
            self._buckets[status] = [0] * len(BUCKETS)
            self._sums[status] = 0.0
            self._counts[status] = 0
        return self._buckets[status]

    def observe(self, status: int, seconds: float) -> None:
        label = str(status)
        with self._lock:
            buckets = self._series(label)
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[index] += 1
            self._sums[label] += seconds
            self._counts[label] += 1

    def render(self) -> list[str]:
        with self._lock:
            statuses = sorted(self._counts)
            lines = [
                "# HELP http_requests_total Requests served by the demo app, by HTTP status.",
                "# TYPE http_requests_total counter",
                *(f'http_requests_total{{status="{status}"}} {self._counts[status]}' for status in statuses),
                "# HELP http_request_duration_seconds Time to answer a request, by HTTP status.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for status in statuses:
                for bound, count in zip(BUCKETS, self._buckets[status], strict=True):
                    lines.append(f'http_request_duration_seconds_bucket{{status="{status}",le="{bound}"}} {count}')
                count = self._counts[status]
                lines.append(f'http_request_duration_seconds_bucket{{status="{status}",le="+Inf"}} {count}')
                lines.append(f'http_request_duration_seconds_sum{{status="{status}"}} {self._sums[status]!r}')
                lines.append(f'http_request_duration_seconds_count{{status="{status}"}} {count}')
            return lines


class DemoApp:
    """The state of one running version: its behaviour (changed live by /admin) and its metrics."""

    def __init__(self, version: str, behaviour: Behaviour) -> None:
        self.version = version
        self._behaviour = behaviour
        self._lock = threading.Lock()
        self._served = 0
        self.histogram = _Histogram()

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    def change(self, error_rate: float | None, latency_ms: float | None) -> Behaviour:
        with self._lock:
            current = self._behaviour
            self._behaviour = Behaviour(
                error_rate=current.error_rate if error_rate is None else error_rate,
                latency_ms=current.latency_ms if latency_ms is None else latency_ms,
            )
            return self._behaviour

    def answer(self) -> int:
        """Apply the behaviour to one app request; returns its HTTP status."""
        behaviour = self.behaviour
        if behaviour.latency_ms:
            time.sleep(behaviour.latency_ms / 1000)
        with self._lock:
            self._served += 1
        return 500 if random.random() < behaviour.error_rate else 200

    def admin_state(self) -> dict[str, object]:
        with self._lock:
            return {"version": self.version, **asdict(self._behaviour), "served": self._served}

    def metrics_text(self) -> str:
        lines = [
            *self.histogram.render(),
            "# HELP demoapp_info The version this demo app process serves.",
            "# TYPE demoapp_info gauge",
            f'demoapp_info{{version="{_escape_label(self.version)}"}} 1',
        ]
        return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, app: DemoApp) -> None:
        self.app = app
        super().__init__((HOST, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without it keep-alive through HAProxy costs 40 ms per request (Nagle plus delayed ACK).
    disable_nagle_algorithm = True
    server: DemoServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        if url.path in _PLAIN_PATHS:
            self._send(200, _PLAIN_PATHS[url.path])
        elif url.path == "/metrics":
            self._send(200, app.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
        elif url.path == "/admin":
            self._admin(url.query)
        else:
            started = time.perf_counter()
            status = app.answer()
            body = app.version if status == 200 else f"{app.version}: injected error"
            app.histogram.observe(status, time.perf_counter() - started)
            self._send(status, body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def _admin(self, query: str) -> None:
        params = parse_qs(query)
        try:
            error_rate = float(params["error_rate"][-1]) if "error_rate" in params else None
            latency_ms = float(params["latency_ms"][-1]) if "latency_ms" in params else None
            self.server.app.change(error_rate, latency_ms)
        except ValueError as error:
            self._send(400, json.dumps({"error": str(error)}), "application/json")
            return
        self._send(200, json.dumps(self.server.app.admin_state()), "application/json")

    def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Version", self.server.app.version)
        self.end_headers()
        self.wfile.write(data)


def make_server(port: int, version: str, behaviour: Behaviour | None = None) -> DemoServer:
    """A bound server (port 0 picks a free one); call `serve_forever()` to run it."""
    return DemoServer(port, DemoApp(version, behaviour or Behaviour()))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m canaryflow.demoapp", description="The demo app of the canaryflow local platform."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True, help="the version string this process serves")
    parser.add_argument("--error-rate", type=float, help=f"share of 500s, 0..1 (default: {BEHAVIOUR_ENV} or 0)")
    parser.add_argument("--latency-ms", type=float, help=f"added latency (default: {BEHAVIOUR_ENV} or 0)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        defaults = behaviour_for(args.version, os.environ)
        behaviour = Behaviour(
            error_rate=defaults.error_rate if args.error_rate is None else args.error_rate,
            latency_ms=defaults.latency_ms if args.latency_ms is None else args.latency_ms,
        )
    except (ValueError, TypeError, AttributeError) as error:
        sys.exit(f"demoapp: invalid behaviour: {error}")
    try:
        server = make_server(args.port, args.version, behaviour)
    except OSError as error:
        sys.exit(f"demoapp: cannot listen on {HOST}:{args.port}: {error}")
    print(
        f"demoapp {args.version} listening on {HOST}:{server.server_address[1]} "
        f"(error_rate={behaviour.error_rate}, latency_ms={behaviour.latency_ms})",
        flush=True,
    )
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
