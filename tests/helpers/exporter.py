"""A synthetic Prometheus exporter for tests: counters and histograms the test controls, served as text.

    with MetricsExporter() as exporter:
        ok = exporter.counter("haproxy_server_http_responses_total", {"server": "canary", "code": "2xx"})
        ok.set_rate(9)                 # grows by 9 per second of wall-clock time, until set_rate(0)
        latency = exporter.histogram("http_request_duration_seconds", [0.05, 0.1, 0.2], {"status": "200"})
        latency.set_rates({0.03: 50, 0.08: 40, 0.15: 10})   # observations per second, by observed value
        ...  # point Prometheus at exporter.target (host:port); every path serves the metrics

Growth at a steady rate makes `rate()` exact whatever the scrape timing, because every series of one scrape is
computed at the same instant. `inc` / `observe` add single steps. Runs `ThreadingHTTPServer` on 127.0.0.1, free port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class Counter:
    """A monotonic counter: a base value plus steady growth since the last change of rate."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._base = 0.0
        self._per_second = 0.0
        self._since = time.time()

    def value(self, now: float | None = None) -> float:
        with self._lock:
            return self._value_at(time.time() if now is None else now)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._base += amount

    def set_rate(self, per_second: float) -> None:
        """Grow by `per_second` from now on; 0 freezes the counter at its current value."""
        with self._lock:
            now = time.time()
            self._base = self._value_at(now)
            self._since = now
            self._per_second = per_second

    def _value_at(self, now: float) -> float:
        return self._base + self._per_second * max(now - self._since, 0.0)


class Histogram:
    """A classic Prometheus histogram (`_bucket{le}`, `_sum`, `_count`) made of counters."""

    def __init__(self, lock: threading.Lock, buckets: list[float]) -> None:
        self.bounds = [*sorted(buckets), float("inf")]
        self.buckets = [Counter(lock) for _ in self.bounds]
        self.sum = Counter(lock)
        self.count = Counter(lock)

    def observe(self, value: float, times: int = 1) -> None:
        for bound, bucket in zip(self.bounds, self.buckets, strict=True):
            if value <= bound:
                bucket.inc(times)
        self.sum.inc(value * times)
        self.count.inc(times)

    def set_rates(self, per_second_by_value: Mapping[float, float]) -> None:
        """Observe each value at the given rate per second from now on; `{}` stops all observations."""
        for bound, bucket in zip(self.bounds, self.buckets, strict=True):
            bucket.set_rate(sum(rate for value, rate in per_second_by_value.items() if value <= bound))
        self.sum.set_rate(sum(value * rate for value, rate in per_second_by_value.items()))
        self.count.set_rate(sum(per_second_by_value.values()))


class MetricsExporter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: list[tuple[str, dict[str, str], Counter]] = []
        self._histograms: list[tuple[str, dict[str, str], Histogram]] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.exporter = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="metrics-exporter", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def target(self) -> str:
        """`host:port`, as Prometheus targets are written."""
        return f"127.0.0.1:{self.port}"

    def counter(self, name: str, labels: Mapping[str, str] | None = None) -> Counter:
        counter = Counter(self._lock)
        self._counters.append((name, dict(labels or {}), counter))
        return counter

    def histogram(self, name: str, buckets: list[float], labels: Mapping[str, str] | None = None) -> Histogram:
        """`name` without suffix: `http_request_duration_seconds` serves `..._bucket`, `..._sum`, `..._count`."""
        histogram = Histogram(self._lock, buckets)
        self._histograms.append((name, dict(labels or {}), histogram))
        return histogram

    def render(self) -> str:
        now = time.time()  # one instant for every series, so ratios between series are exact
        families: dict[str, list[str]] = {}  # each family's lines stay together, under one TYPE line
        for name, labels, counter in self._counters:
            family = families.setdefault(name, [f"# TYPE {name} counter"])
            family.append(f"{name}{_labels(labels)} {_number(counter.value(now))}")
        for name, labels, histogram in self._histograms:
            family = families.setdefault(name, [f"# TYPE {name} histogram"])
            for bound, bucket in zip(histogram.bounds, histogram.buckets, strict=True):
                bucket_labels = {**labels, "le": _number(bound)}
                family.append(f"{name}_bucket{_labels(bucket_labels)} {_number(bucket.value(now))}")
            family.append(f"{name}_sum{_labels(labels)} {_number(histogram.sum.value(now))}")
            family.append(f"{name}_count{_labels(labels)} {_number(histogram.count.value(now))}")
        return "".join(line + "\n" for lines in families.values() for line in lines)

    def start(self) -> MetricsExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsExporter:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    exporter: MetricsExporter


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        exporter = self.server.exporter
        body = exporter.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
