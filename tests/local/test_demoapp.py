"""The demo app: what a release on the local platform serves, and the metrics Prometheus scrapes from it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from canaryflow.demoapp import BEHAVIOUR_ENV, BUCKETS, Behaviour, behaviour_for, make_server
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text format → {(name, labels): value}; fails on any line that is not a valid sample."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        samples[(name, pairs)] = float(value)
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@contextmanager
def serving(version: str, behaviour: Behaviour | None = None) -> Iterator[httpx.Client]:
    server = make_server(0, version, behaviour)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}", trust_env=False) as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_any_path_answers_the_version_in_body_and_header_over_http_1_1() -> None:
    with serving("v1") as client:
        for path in ("/", "/checkout", "/api/items?id=3"):
            response = client.get(path)
            assert (response.status_code, response.text) == (200, "v1")
            assert response.headers["X-Version"] == "v1"
            assert response.http_version == "HTTP/1.1"
        for path in ("/healthz", "/readyz"):
            response = client.get(path)
            assert (response.status_code, response.headers["X-Version"]) == (200, "v1")
        assert client.post("/", content=b"payload").text == "v1"


def test_error_rate_one_answers_500_to_every_request() -> None:
    with serving("v3-bad", Behaviour(error_rate=1.0)) as client:
        statuses = {client.get("/").status_code for _ in range(20)}
        assert statuses == {500}
        assert client.get("/readyz").status_code == 200  # a bad version still starts and passes readiness


def test_latency_knob_delays_every_app_request_but_not_probes() -> None:
    with serving("slow", Behaviour(latency_ms=150)) as client:
        started = time.perf_counter()
        assert client.get("/").status_code == 200
        assert time.perf_counter() - started >= 0.15
        started = time.perf_counter()
        client.get("/readyz")
        assert time.perf_counter() - started < 0.15


def test_admin_changes_the_behaviour_live() -> None:
    with serving("v2") as client:
        assert client.get("/").status_code == 200
        state = client.get("/admin", params={"error_rate": "1"}).json()
        assert state == {"version": "v2", "error_rate": 1.0, "latency_ms": 0.0, "served": 1}
        assert client.get("/").status_code == 500
        client.get("/admin", params={"error_rate": "0", "latency_ms": "120"})
        started = time.perf_counter()
        assert client.get("/").status_code == 200
        assert time.perf_counter() - started >= 0.12


def test_admin_rejects_invalid_knobs_and_keeps_the_behaviour() -> None:
    with serving("v2", Behaviour(error_rate=0.0)) as client:
        for params in ({"error_rate": "2"}, {"error_rate": "lots"}, {"latency_ms": "-5"}):
            assert client.get("/admin", params=params).status_code == 400
        assert client.get("/admin").json()["error_rate"] == 0.0
        assert client.get("/").status_code == 200


def test_behaviour_env_gives_per_version_defaults() -> None:
    table = json.dumps({"v3-bad": {"error_rate": 0.3, "latency_ms": 200}, "v4": {"latency_ms": 50}})
    environ = {BEHAVIOUR_ENV: table}
    assert behaviour_for("v3-bad", environ) == Behaviour(error_rate=0.3, latency_ms=200)
    assert behaviour_for("v4", environ) == Behaviour(error_rate=0.0, latency_ms=50)
    assert behaviour_for("v1", environ) == Behaviour()
    assert behaviour_for("v1", {}) == Behaviour()
    with pytest.raises(ValueError):
        behaviour_for("v3-bad", {BEHAVIOUR_ENV: json.dumps({"v3-bad": {"error_rate": 3}})})


@contextmanager
def demo_process(*args: str, env: dict[str, str]) -> Iterator[httpx.Client]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "canaryflow.demoapp", "--port", str(port), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.get("/readyz")
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.communicate()[0]
                    assert time.monotonic() < deadline, "the demo app did not start listening"
                    time.sleep(0.02)
            yield client
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_command_line_runs_the_version_with_its_env_defaults_and_flags_override_them() -> None:
    env = {BEHAVIOUR_ENV: json.dumps({"v3-bad": {"error_rate": 1.0}})}
    with (
        demo_process("--version", "v3-bad", env=env) as bad,
        demo_process("--version", "v1", env=env) as good,
    ):
        assert {bad.get("/").status_code for _ in range(5)} == {500}
        assert bad.get("/").headers["X-Version"] == "v3-bad"
        assert good.get("/").text == "v1"
    with demo_process("--version", "v3-bad", "--error-rate", "0", env=env) as overridden:
        assert overridden.get("/").status_code == 200


def test_command_line_refuses_an_invalid_behaviour_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "canaryflow.demoapp", "--port", str(free_port()), "--version", "v1"],
        env={**os.environ, BEHAVIOUR_ENV: "{not json"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode != 0
    assert "invalid behaviour" in result.stderr


def test_metrics_count_app_requests_by_status_with_histogram_buckets() -> None:
    with serving("v2") as client:
        for _ in range(5):
            client.get("/")
        client.get("/admin", params={"error_rate": "1", "latency_ms": "200"})
        for _ in range(3):
            client.get("/")
        client.get("/healthz")
        client.get("/metrics")  # probes, scrapes and admin calls are not app traffic
        response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(response.text)
    assert sample(samples, "http_requests_total", status="200") == 5
    assert sample(samples, "http_requests_total", status="500") == 3
    assert sample(samples, "demoapp_info", version="v2") == 1
    for status, count in (("200", 5), ("500", 3)):
        bounds = [*(repr(bound) for bound in BUCKETS), "+Inf"]
        cumulative = [
            sample(samples, "http_request_duration_seconds_bucket", status=status, le=bound) for bound in bounds
        ]
        assert cumulative == sorted(cumulative)
        assert cumulative[-1] == count
        assert sample(samples, "http_request_duration_seconds_count", status=status) == count
    # the fast answers all fall under 0.1 s; the 200 ms ones between 0.2 and 0.25 s
    assert sample(samples, "http_request_duration_seconds_bucket", status="200", le="0.1") == 5
    assert sample(samples, "http_request_duration_seconds_bucket", status="500", le="0.2") == 0
    assert sample(samples, "http_request_duration_seconds_bucket", status="500", le="0.25") == 3
    assert sample(samples, "http_request_duration_seconds_sum", status="500") >= 0.6


def test_histogram_has_the_bucket_bounds_latency_slos_need() -> None:
    assert {0.005, 0.1, 0.125, 0.15, 0.2, 0.25, 0.5, 2.5} <= set(BUCKETS)
    assert list(BUCKETS) == sorted(BUCKETS)


def test_metrics_export_zero_counters_before_any_request() -> None:
    with serving("v1") as client:
        samples = parse_metrics(client.get("/metrics").text)
    assert sample(samples, "http_requests_total", status="200") == 0
    assert sample(samples, "http_requests_total", status="500") == 0
