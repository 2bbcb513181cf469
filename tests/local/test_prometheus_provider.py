"""The Prometheus metric provider and the builtin `haproxy` observer, against a real Prometheus.

Synthetic exporters served from this process stand in for HAProxy's exporter and the apps; Prometheus finds them
through file_sd targets carrying the labels the HAProxy router writes (`canary=<ns>/<name>`, `component`,
`role`). Their counters grow at steady rates, so `rate()` ratios are exact whatever the scrape timing.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities import dispatch
from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
)
from activities.metrics.base import BUILTIN_OBSERVERS, METRIC_PROVIDERS
from activities.metrics.builtin_haproxy import haproxy_observer
from activities.metrics.builtins import builtin_observers
from activities.metrics.prometheus import PrometheusProvider, duration_seconds, effective_window
from activities.secrets import SECRETS_DIR_ENV
from canaryflow.loader import parse_resource
from canaryflow.spec import Canary, MetricTemplate
from tests.helpers.errors import raised
from tests.helpers.exporter import Histogram, MetricsExporter
from tests.helpers.http_receiver import HttpReceiver, RecordedRequest, ScriptedResponse
from tests.local.prometheus_fixture import (
    INSTALL_HINT,
    BasicAuthUser,
    PrometheusServer,
    file_sd_scrape_config,
    prometheus_binary,
    write_file_sd,
)

NAMESPACE = "shop"
LATENCY_BUCKETS = [0.05, 0.1, 0.2, 0.5]
# bcrypt of BASIC_USER.password (cost 4, test-only), for Prometheus' web config.
BASIC_USER = BasicAuthUser("flagger", "s3cret-pass", "$2b$04$3cjmEa3HfevCYlIR0FGZ7eorsKhIBlSyIQx9fov40nuF12Tnzh3oy")
BEARER_TOKEN = "tok-3f9a1c"


def canary(name: str, metrics_server: str | None = None) -> Canary:
    spec: dict[str, Any] = {
        "provider": "haproxy",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "service": {"port": 18480},
    }
    if metrics_server is not None:
        spec["metricsServer"] = metrics_server
    resource = parse_resource(
        {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name, "namespace": NAMESPACE}}
        | {"spec": spec}
    )
    assert isinstance(resource, Canary)
    return resource


def metric_template(address: str, query: str, secret: str | None = None, **provider: Any) -> MetricTemplate:
    settings: dict[str, Any] = {"type": "prometheus", "address": address, **provider}
    if secret is not None:
        settings["secretRef"] = {"name": secret}
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "error-rate", "namespace": NAMESPACE},
            "spec": {"provider": settings, "query": query},
        }
    )
    assert isinstance(resource, MetricTemplate)
    return resource


def metric_query(
    name: str = "checkout",
    metric: str = "request-success-rate",
    template: MetricTemplate | None = None,
    interval: str = "1m",
    since_change: float | None = None,
) -> c.MetricQuery:
    return c.MetricQuery(
        target=c.ReleaseTarget(canary=canary(name)),
        metric_name=metric,
        template=template,
        interval=interval,
        since_last_route_change_seconds=since_change,
    )


# ----------------------------------------------------------------------------------------------------------------
# Query windows (pure)


@pytest.mark.parametrize(
    ("interval", "since_change", "expected"),
    [
        ("1m", None, "1m"),  # unknown: the metric's own interval
        ("1m", 60.0, "1m"),
        ("1m", 600.0, "1m"),
        ("1m", 12.7, "12s"),  # rounded down, so the window never reaches back past the change
        ("1m30s", 45.0, "45s"),
        ("1m", 0.4, "2s"),  # two scrape intervals at least
        ("1m", -3.0, "2s"),  # a clock step backwards is no reason for an empty window
        ("1s", 0.2, "1s"),  # an interval already below the floor is the user's choice
        ("3s", 1.0, "2s"),
        ("whenever", 5.0, "whenever"),  # not a duration: left for Prometheus to reject
    ],
)
def test_effective_window(interval: str, since_change: float | None, expected: str) -> None:
    assert effective_window(interval, since_change) == expected


def test_effective_window_floor_is_configurable() -> None:
    assert effective_window("1m", 1.0, floor_seconds=5.0) == "5s"
    assert effective_window("1m", 1.0, floor_seconds=2.5) == "3s"


@given(
    interval_seconds=st.integers(min_value=1, max_value=7200),
    since_change=st.floats(min_value=-10, max_value=10_000, allow_nan=False),
    floor_seconds=st.floats(min_value=0.5, max_value=30, allow_nan=False),
)
def test_effective_window_stays_between_floor_and_interval(
    interval_seconds: int, since_change: float, floor_seconds: float
) -> None:
    window = duration_seconds(effective_window(f"{interval_seconds}s", since_change, floor_seconds))
    assert window is not None
    assert window <= interval_seconds
    assert window >= min(interval_seconds, floor_seconds)
    if since_change < interval_seconds:
        assert window <= max(since_change, floor_seconds + 1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60.0), ("30s", 30.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("500ms", 0.5), ("1h", 3600.0)],
)
def test_duration_seconds_reads_go_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "m", "1x", "1m 30s", "-1m", "1m30"])
def test_duration_seconds_rejects_what_is_not_a_duration(text: str) -> None:
    assert duration_seconds(text) is None


# ----------------------------------------------------------------------------------------------------------------
# Builtin observers: rendering (pure)


def test_haproxy_success_rate_selects_the_canary_by_its_target_label_on_the_shrunk_window() -> None:
    rendered = haproxy_observer("http://prom:9090").query(metric_query("checkout", since_change=12.3))
    assert rendered == (
        '(sum(rate(haproxy_server_http_responses_total{canary="shop/checkout",server="canary",code!="5xx"}[12s])) '
        '/ sum(rate(haproxy_server_http_responses_total{canary="shop/checkout",server="canary"}[12s])) * 100) >= 0 '
        'or (sum(rate(http_requests_total{canary="shop/checkout",role="canary",status!~"5.."}[12s])) '
        '/ sum(rate(http_requests_total{canary="shop/checkout",role="canary"}[12s])) * 100)'
    )


def test_haproxy_duration_is_the_canary_apps_p99_in_milliseconds() -> None:
    rendered = haproxy_observer("http://prom:9090").query(metric_query("checkout", "request-duration"))
    assert rendered == (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{canary="shop/checkout",role="canary"}[1m]))) * 1000'
    )


def test_http_observer_renders_flaggers_pod_selectors() -> None:
    rendered = builtin_observers("http://prom:9090")["kubernetes"].query(metric_query("podinfo"))
    assert 'kubernetes_namespace="shop"' in rendered
    assert 'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"' in rendered
    assert 'status!~"5.*"' in rendered
    assert "[1m]" in rendered


def test_a_metric_that_is_not_builtin_is_an_invalid_spec() -> None:
    with pytest.raises(ApplicationError) as caught:
        haproxy_observer("http://prom:9090").query(metric_query(metric="error-budget"))
    assert caught.value.type == c.ERR_INVALID_SPEC
    assert caught.value.non_retryable
    assert "error-budget" in str(caught.value)


def test_builtin_provider_uses_the_canarys_metrics_server_else_the_workers() -> None:
    observer = haproxy_observer("http://worker-default:9090")
    assert observer.provider(metric_query()).address == "http://worker-default:9090"
    own = c.MetricQuery(
        target=c.ReleaseTarget(canary=canary("checkout", metrics_server="http://own:9091")),
        metric_name="request-success-rate",
    )
    assert observer.provider(own).address == "http://own:9091"


async def test_template_without_address_is_an_invalid_spec() -> None:
    template = metric_template("http://unused", "vector(1)").model_copy(deep=True)
    template.spec.provider.address = None
    error = await raised(PrometheusProvider().run_query(metric_query(template=template), "vector(1)"))
    assert error.type == c.ERR_INVALID_SPEC
    assert "address" in str(error)


# ----------------------------------------------------------------------------------------------------------------
# A real Prometheus scraping synthetic router and app exporters


@dataclass
class Stack:
    prometheus: PrometheusServer
    recovering_errors: Any  # the Counter of 5xx answers of canary `recovering`

    @property
    def url(self) -> str:
        return self.prometheus.url


def _router_exporter(name: str, canary_rates: dict[str, float], primary_rates: dict[str, float]) -> MetricsExporter:
    """HAProxy's exporter for one canary: per-server response counters by status class."""
    exporter = MetricsExporter()
    for server, rates in (("canary", canary_rates), ("primary", primary_rates)):
        for code, per_second in rates.items():
            labels = {"proxy": f"be_{name}", "server": server, "code": code}
            exporter.counter("haproxy_server_http_responses_total", labels).set_rate(per_second)
    return exporter


def _app_exporter(per_second_by_latency: dict[float, float]) -> tuple[MetricsExporter, Histogram]:
    exporter = MetricsExporter()
    histogram = exporter.histogram("http_request_duration_seconds", LATENCY_BUCKETS, {"status": "200"})
    histogram.set_rates(per_second_by_latency)
    return exporter, histogram


def _targets(name: str, router: MetricsExporter, apps: dict[str, MetricsExporter]) -> list[dict[str, Any]]:
    """The file_sd groups the HAProxy router writes for one canary (docs/local-platform.md)."""
    key = f"{NAMESPACE}/{name}"
    groups: list[dict[str, Any]] = [{"targets": [router.target], "labels": {"canary": key, "component": "router"}}]
    for role, app in apps.items():
        labels = {"__metrics_path__": "/metrics", "canary": key, "role": role, "component": "app"}
        groups.append({"targets": [app.target], "labels": labels})
    return groups


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if prometheus_binary() is None:
        pytest.skip(INSTALL_HINT)
    work_dir = tmp_path_factory.mktemp("prometheus")
    targets_dir = work_dir / "targets"
    # checkout: the canary answers 8/s 2xx, 1/s 4xx (a success for Flagger), 1/s 5xx: 90 %. The primary is far
    # worse, and its app far slower, so picking the wrong server or role shows in the value.
    checkout_router = _router_exporter("checkout", {"2xx": 8, "4xx": 1, "5xx": 1}, {"2xx": 1, "5xx": 9})
    # p99 of 50/s at 30 ms, 40/s at 80 ms, 10/s at 150 ms: rank 99 of 100 is 9/10 into (0.1, 0.2] → 190 ms.
    checkout_canary_app, _ = _app_exporter({0.03: 50, 0.08: 40, 0.15: 10})
    checkout_primary_app, _ = _app_exporter({0.4: 100})
    # idle: series exist, nothing grows (no traffic reaches the canary).
    idle_router = _router_exporter("idle", {"2xx": 0, "5xx": 0}, {"2xx": 5})
    idle_app, _ = _app_exporter({})
    # recovering: half its answers fail until a test stops the errors.
    recovering_router = MetricsExporter()
    labels = {"proxy": "be_recovering", "server": "canary"}
    recovering_router.counter("haproxy_server_http_responses_total", labels | {"code": "2xx"}).set_rate(5)
    recovering_errors = recovering_router.counter("haproxy_server_http_responses_total", labels | {"code": "5xx"})
    recovering_errors.set_rate(5)
    exporters = [
        checkout_router,
        checkout_canary_app,
        checkout_primary_app,
        idle_router,
        idle_app,
        recovering_router,
    ]
    for exporter in exporters:
        exporter.start()
    write_file_sd(
        targets_dir / f"{NAMESPACE}-checkout.json",
        _targets("checkout", checkout_router, {"canary": checkout_canary_app, "primary": checkout_primary_app}),
    )
    write_file_sd(targets_dir / f"{NAMESPACE}-idle.json", _targets("idle", idle_router, {"canary": idle_app}))
    write_file_sd(targets_dir / f"{NAMESPACE}-recovering.json", _targets("recovering", recovering_router, {}))
    prometheus = PrometheusServer(work_dir, [file_sd_scrape_config("canaryflow", targets_dir / "*.json")])
    try:
        with prometheus:
            yield Stack(prometheus, recovering_errors)
    finally:
        for exporter in exporters:
            exporter.stop()


async def first_value(provider: PrometheusProvider, query: c.MetricQuery, rendered: str) -> float:
    """Poll until Prometheus has scraped enough samples for `rendered` to have a value."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        value = await provider.run_query(query, rendered)
        if value is not None:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"no value for {rendered} within 15 s")


@pytest.mark.integration
async def test_success_rate_of_the_canary_server_only(stack: Stack) -> None:
    observer = haproxy_observer(stack.url)
    query = metric_query("checkout")
    value = await first_value(observer.provider(query), query, observer.query(query))
    assert value == pytest.approx(90.0, abs=1e-6)


@pytest.mark.integration
async def test_duration_is_the_canary_apps_p99_in_milliseconds(stack: Stack) -> None:
    observer = haproxy_observer(stack.url)
    query = metric_query("checkout", "request-duration")
    value = await first_value(observer.provider(query), query, observer.query(query))
    assert value == pytest.approx(190.0, rel=1e-6)


@pytest.mark.integration
async def test_builtin_metrics_through_the_metrics_query_activity(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = haproxy_observer(stack.url)
    monkeypatch.setitem(BUILTIN_OBSERVERS, "haproxy", observer)
    monkeypatch.setitem(METRIC_PROVIDERS, "prometheus", PrometheusProvider())
    query = metric_query("checkout")
    await first_value(observer.provider(query), query, observer.query(query))

    builtin = await dispatch.metric_query(query)
    assert builtin.value == pytest.approx(90.0, abs=1e-6)
    assert 'canary="shop/checkout"' in builtin.query

    error_ratio = metric_template(
        stack.url,
        """sum(rate(haproxy_server_http_responses_total{
               canary="{{ namespace }}/{{ name }}", server="canary", code="5xx"}[{{ interval }}]))
           / sum(rate(haproxy_server_http_responses_total{
               canary="{{ namespace }}/{{ name }}", server="canary"}[{{ interval }}]))""",
    )
    templated = await dispatch.metric_query(metric_query("checkout", "error-ratio", template=error_ratio))
    assert templated.value == pytest.approx(0.1, rel=1e-6)
    assert "[1m]" in templated.query


@pytest.mark.integration
@pytest.mark.parametrize("metric", ["request-success-rate", "request-duration"])
async def test_no_traffic_is_no_value(stack: Stack, metric: str) -> None:
    observer = haproxy_observer(stack.url)
    provider = observer.provider(metric_query("idle"))
    # Enough scrapes of both idle targets for rate() to have samples: None below is 0/0, not "no data yet".
    await first_value(provider, metric_query("idle"), 'min(count_over_time(up{canary="shop/idle"}[1m])) >= 3')
    no_requests = 'sum(rate(haproxy_server_http_responses_total{canary="shop/idle",server="canary"}[1m]))'
    assert await provider.run_query(metric_query("idle"), no_requests) == 0.0
    idle = metric_query("idle", metric)
    assert await provider.run_query(idle, observer.query(idle)) is None


@pytest.mark.integration
async def test_a_canary_without_series_is_no_value(stack: Stack) -> None:
    observer = haproxy_observer(stack.url)
    absent = metric_query("absent")
    assert await observer.provider(absent).run_query(absent, observer.query(absent)) is None


@pytest.mark.integration
async def test_a_window_shrunk_to_the_last_route_change_excludes_older_errors(stack: Stack) -> None:
    observer = haproxy_observer(stack.url)
    before = metric_query("recovering")
    assert await first_value(observer.provider(before), before, observer.query(before)) < 99.0
    stack.recovering_errors.set_rate(0)  # the canary is healthy from here on: its "route change"
    changed_at = time.time()
    await asyncio.sleep(3.3)
    since_change = time.time() - changed_at
    shrunk = metric_query("recovering", since_change=since_change)
    full = metric_query("recovering")
    assert "[3s]" in observer.query(shrunk)
    provider = observer.provider(shrunk)
    assert await provider.run_query(shrunk, observer.query(shrunk)) == pytest.approx(100.0)
    # The metric's own 1m window still averages in the errors from before the change.
    full_value = await provider.run_query(full, observer.query(full))
    assert full_value is not None
    assert full_value < 99.0


@pytest.mark.integration
async def test_template_query_last_sample_and_whitespace(stack: Stack) -> None:
    template = metric_template(stack.url, "unused")
    query = metric_query(template=template)
    provider = PrometheusProvider()
    # Several series: the last sample wins, as in Flagger.
    assert await provider.run_query(query, "sort(vector(3) or label_replace(vector(7), 'x', 'y', '', ''))") == 7.0
    assert await provider.run_query(query, "sum(\n   vector(2)\n)\t* 21") == 42.0
    assert await provider.run_query(query, "vector(0) / vector(0)") is None  # NaN
    assert await provider.is_online(query)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("promql", "expected_text"),
    [
        ("sum(rate(haproxy_server_http_responses_total[1m])", "parse error"),
        ('up{canary="shop/checkout"}[10s]', "range vector"),
        ("scalar(vector(1))", "scalar"),
    ],
)
async def test_a_bad_query_is_non_retryable(stack: Stack, promql: str, expected_text: str) -> None:
    query = metric_query(template=metric_template(stack.url, promql))
    error = await raised(PrometheusProvider().run_query(query, promql))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert error.non_retryable
    assert expected_text in str(error)


# ----------------------------------------------------------------------------------------------------------------
# Credentials


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    (directory / NAMESPACE).mkdir(parents=True)
    monkeypatch.setenv(SECRETS_DIR_ENV, str(directory))
    return directory


@pytest.fixture(scope="module")
def basic_auth_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    if prometheus_binary() is None:
        pytest.skip(INSTALL_HINT)
    with PrometheusServer(tmp_path_factory.mktemp("prometheus-auth"), [], basic_auth=BASIC_USER) as prometheus:
        yield prometheus


@pytest.fixture
def bearer_proxy(stack: Stack) -> Iterator[HttpReceiver]:
    """Prometheus behind a proxy that wants `Authorization: Bearer <BEARER_TOKEN>` (Prometheus has no bearer auth)."""

    def forward(request: RecordedRequest) -> ScriptedResponse:
        if request.header("authorization") != f"Bearer {BEARER_TOKEN}":
            return ScriptedResponse(status=401, body="Unauthorized")
        try:
            with urllib.request.urlopen(stack.url + request.path, timeout=5) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            status, body = refused.code, refused.read()
        return ScriptedResponse(status=status, body=body, headers={"Content-Type": "application/json"})

    with HttpReceiver() as proxy:
        proxy.handler = forward
        yield proxy


@pytest.mark.integration
async def test_basic_auth_from_the_secret(basic_auth_prometheus: PrometheusServer, secrets_dir: Path) -> None:
    (secrets_dir / NAMESPACE / "prom-basic.yaml").write_text(
        f"username: {BASIC_USER.username}\npassword: {BASIC_USER.password}\n"
    )
    query = metric_query(template=metric_template(basic_auth_prometheus.url, "vector(1)", secret="prom-basic"))
    assert await PrometheusProvider().run_query(query, "vector(1) * 5") == 5.0
    assert await PrometheusProvider().is_online(query)


@pytest.mark.integration
async def test_wrong_basic_auth_fails_without_retry_or_leak(
    basic_auth_prometheus: PrometheusServer, secrets_dir: Path
) -> None:
    (secrets_dir / NAMESPACE / "prom-basic.yaml").write_text("username: flagger\npassword: wrong-pass-77\n")
    query = metric_query(template=metric_template(basic_auth_prometheus.url, "vector(1)", secret="prom-basic"))
    error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "wrong-pass-77" not in str(error)


@pytest.mark.integration
async def test_no_credentials_against_a_protected_prometheus(basic_auth_prometheus: PrometheusServer) -> None:
    query = metric_query(template=metric_template(basic_auth_prometheus.url, "vector(1)"))
    error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
    assert error.type == ERR_METRIC_AUTH_FAILED


@pytest.mark.integration
async def test_bearer_token_and_template_headers_are_sent(bearer_proxy: HttpReceiver, secrets_dir: Path) -> None:
    (secrets_dir / NAMESPACE / "prom-token.yaml").write_text(f"token: {BEARER_TOKEN}\n")
    template = metric_template(bearer_proxy.url, "unused", secret="prom-token", headers={"X-Scope-OrgID": ["tenant-a"]})
    query = metric_query(template=template)
    assert await PrometheusProvider().run_query(query, "sum(\n  vector(4)\n)") == 4.0
    sent = bearer_proxy.requests[-1]
    assert sent.header("x-scope-orgid") == "tenant-a"
    assert urlsplit(sent.path).path == "/api/v1/query"
    assert parse_qs(urlsplit(sent.path).query)["query"] == ["sum( vector(4) )"]


@pytest.mark.integration
async def test_wrong_bearer_token_fails_without_retry_or_leak(bearer_proxy: HttpReceiver, secrets_dir: Path) -> None:
    (secrets_dir / NAMESPACE / "prom-token.yaml").write_text("token: not-the-token-91\n")
    query = metric_query(template=metric_template(bearer_proxy.url, "unused", secret="prom-token"))
    error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "not-the-token-91" not in str(error)


@pytest.mark.parametrize(
    ("content", "expected_text"),
    [(None, "not found"), ("username: flagger\n", "`password`"), ("other: x\n", "`username` and `password`")],
)
async def test_unusable_secret_is_an_auth_failure(secrets_dir: Path, content: str | None, expected_text: str) -> None:
    if content is not None:
        (secrets_dir / NAMESPACE / "prom-auth.yaml").write_text(content)
    query = metric_query(template=metric_template("http://127.0.0.1:1", "vector(1)", secret="prom-auth"))
    error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert expected_text in str(error)


# ----------------------------------------------------------------------------------------------------------------
# Transport


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_prometheus_down_is_retryable() -> None:
    address = f"http://127.0.0.1:{_closed_port()}"
    query = metric_query(template=metric_template(address, "vector(1)"))
    error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert "Connection refused" in str(error)


async def test_a_slow_prometheus_times_out_retryably() -> None:
    with HttpReceiver(default=ScriptedResponse(body={"status": "success"}, delay_seconds=2)) as slow:
        query = metric_query(template=metric_template(slow.url, "vector(1)"))
        started = time.monotonic()
        error = await raised(PrometheusProvider(timeout_seconds=0.3).run_query(query, "vector(1)"))
    assert time.monotonic() - started < 1.5
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert "0.3s" in str(error)


@pytest.mark.parametrize(
    ("response", "error_type", "retryable"),
    [
        (ScriptedResponse(status=503, body="overloaded"), ERR_METRIC_SERVER_UNAVAILABLE, True),
        (ScriptedResponse(status=404, body="404 page not found"), ERR_METRIC_QUERY_FAILED, False),
        (ScriptedResponse(status=200, body="<html>grafana</html>"), ERR_METRIC_QUERY_FAILED, False),
    ],
)
async def test_answers_that_are_not_a_query_result(
    response: ScriptedResponse, error_type: str, retryable: bool
) -> None:
    with HttpReceiver(default=response) as server:
        query = metric_query(template=metric_template(server.url + "/", "vector(1)"))
        error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
        assert len(server.requests) == 1  # no retry inside the client: the activity's retry policy decides
    assert error.type == error_type
    assert error.non_retryable is not retryable


async def test_address_path_prefix_and_credentials_in_the_address_are_not_shown() -> None:
    with HttpReceiver(default=ScriptedResponse(status=500, body="boom")) as server:
        address = f"http://admin:hunter2@127.0.0.1:{server.port}/prometheus/"
        query = metric_query(template=metric_template(address, "vector(1)"))
        error = await raised(PrometheusProvider().run_query(query, "vector(1)"))
        assert urlsplit(server.requests[0].path).path == "/prometheus/api/v1/query"
    assert "hunter2" not in str(error)
    assert f"127.0.0.1:{server.port}/prometheus" in str(error)
