"""Builtin `request-success-rate` / `request-duration` per router: Flagger's PromQL, run on a real Prometheus.

Golden strings are Flagger's own expectations (`pkg/metrics/observers/*_test.go`, whitespace-collapsed) for the
same canaries. The live tests serve, from one synthetic exporter, each router's real metric families and labels
for the canary (90% non-5xx, latencies 30/80/150 ms in a 50/40/10 mix: P99 = 190 ms, mean = 62 ms) next to decoy
series a wrong selector would pick up (the primary, other directions or reporters: 50% errors, 400 ms).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from activities.metrics.builtin_haproxy import HAPROXY_QUERIES, HTTP_QUERIES
from activities.metrics.builtins import ISTIO_QUERIES, builtin_observers
from activities.metrics.prometheus import PrometheusObserver, PrometheusProvider
from activities.routers.base import router_key
from canaryflow.spec import Canary
from tests.helpers.exporter import MetricsExporter
from tests.local.prometheus_fixture import INSTALL_HINT, PrometheusServer, prometheus_binary
from tests.metrics.queries import NAMESPACE, make_canary, metric_query

SUCCESS_RATE = "request-success-rate"
DURATION = "request-duration"

# ----------------------------------------------------------------------------------------------------------------
# Golden strings: Flagger's expected queries for Flagger's test canaries

_GOLDEN: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "istio",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="default", '
        'destination_workload=~"podinfo", response_code!~"5.*" }[1m] ) ) / sum( rate( istio_requests_total{ '
        'reporter="destination", destination_workload_namespace="default", destination_workload=~"podinfo" }[1m] ) )'
        " * 100",
    ),
    (
        "istio",
        {"namespace": "default"},
        DURATION,
        'histogram_quantile( 0.99, sum( rate( istio_request_duration_milliseconds_bucket{ reporter="destination", '
        'destination_workload_namespace="default", destination_workload=~"podinfo" }[1m] ) ) by (le) )',
    ),
    (
        "linkerd",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( response_total{ namespace="default", deployment=~"podinfo", classification!="failure", '
        'direction="inbound" }[1m] ) ) / sum( rate( response_total{ namespace="default", deployment=~"podinfo", '
        'direction="inbound" }[1m] ) ) * 100',
    ),
    (
        "linkerd",
        {"namespace": "default"},
        DURATION,
        'histogram_quantile( 0.99, sum( rate( response_latency_ms_bucket{ namespace="default", '
        'deployment=~"podinfo", direction="inbound" }[1m] ) ) by (le) )',
    ),
    (
        "nginx",
        {
            "namespace": "nginx",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
        },
        SUCCESS_RATE,
        'sum( rate( nginx_ingress_controller_requests{ namespace="nginx", ingress="podinfo", canary!="", '
        'status!~"5.*" }[1m] ) ) / sum( rate( nginx_ingress_controller_requests{ namespace="nginx", '
        'ingress="podinfo", canary!="" }[1m] ) ) * 100',
    ),
    (
        "nginx",
        {
            "namespace": "nginx",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"},
        },
        DURATION,
        'sum( rate( nginx_ingress_controller_response_duration_seconds_sum{ namespace="nginx", ingress="podinfo", '
        'canary!="" }[1m] ) ) / sum( rate( nginx_ingress_controller_response_duration_seconds_count{ '
        'namespace="nginx", ingress="podinfo", canary!="" }[1m] ) ) * 1000',
    ),
    (
        "contour",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"default_podinfo-canary_[0-9a-zA-Z-]+", '
        'envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ '
        'envoy_cluster_name=~"default_podinfo-canary_[0-9a-zA-Z-]+", }[1m] ) ) * 100',
    ),
    (
        "contour",
        {"namespace": "default", "service": {"name": "podinfo-service", "port": 9898}},
        DURATION,
        "histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ "
        'envoy_cluster_name=~"default_podinfo-service-canary_[0-9a-zA-Z-]+", }[1m] ) ) by (le) )',
    ),
    (
        "gloo",
        {"namespace": "default"},
        SUCCESS_RATE,
        "sum( rate( envoy_cluster_upstream_rq{ "
        'envoy_cluster_name=~"default-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", '
        'envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ '
        'envoy_cluster_name=~"default-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[1m] ) ) * 100',
    ),
    (
        "gloo",
        {"namespace": "default"},
        DURATION,
        "histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ "
        'envoy_cluster_name=~"default-podinfo-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[1m] ) ) by (le) )',
    ),
    (
        "traefik",
        {"namespace": "default"},
        SUCCESS_RATE,
        "sum( rate( traefik_service_request_duration_seconds_bucket{ "
        'service=~"default-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd", code!~"5..", le="+Inf" }[1m] ) ) '
        "/ sum( rate( traefik_service_request_duration_seconds_bucket{ "
        'service=~"default-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd", le="+Inf" }[1m] ) ) * 100',
    ),
    (
        "traefik",
        {"namespace": "default"},
        DURATION,
        "histogram_quantile( 0.99, sum( rate( traefik_service_request_duration_seconds_bucket{ "
        'service=~"default-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd" }[1m] ) ) by (le) ) * 1000',
    ),
    (
        "kuma",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( envoy_cluster_upstream_rq{ service=~"podinfo-canary_default_svc_[0-9a-zA-Z-]+", '
        'envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ '
        'service=~"podinfo-canary_default_svc_[0-9a-zA-Z-]+", }[1m] ) ) * 100',
    ),
    (
        "kuma",
        {"namespace": "default"},
        DURATION,
        "histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ "
        'service=~"podinfo-canary_default_svc_[0-9a-zA-Z-]+", }[1m] ) ) by (le) )',
    ),
    (
        "skipper",
        {
            "namespace": "skipper",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "skipper-ingress"},
            "service": {"name": "backend", "port": 9898},
        },
        SUCCESS_RATE,
        "sum(rate(skipper_response_duration_seconds_bucket{"
        'route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?",code!~"5..",le="+Inf"}'
        "[1m])) / sum(rate(skipper_response_duration_seconds_bucket{"
        'route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?",le="+Inf"}[1m])) * 100',
    ),
    (
        "skipper",
        {
            "namespace": "skipper",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "skipper-ingress"},
            "service": {"name": "backend", "port": 9898},
        },
        DURATION,
        "sum(rate(skipper_serve_route_duration_seconds_sum{"
        'route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?"}[1m])) '
        "/ sum(rate(skipper_serve_route_duration_seconds_count{"
        'route=~"kube(ew)?_skipper__skipper_ingress_canary__.*__backend_canary(_[0-9]+)?"}[1m])) * 1000',
    ),
    (
        "appmesh",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="default", '
        'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", envoy_response_code!~"5.*" }[1m] ) ) '
        '/ sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="default", '
        'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) * 100',
    ),
    (
        "appmesh",
        {"namespace": "default"},
        DURATION,
        'histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ kubernetes_namespace="default", '
        'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) by (le) )',
    ),
    (
        "apisix",
        {
            "namespace": "default",
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"},
        },
        SUCCESS_RATE,
        'sum( rate( apisix_http_status{ route=~"default_podinfo-podinfo-canary_.+", code!~"5.." }[1m] ) ) '
        '/ sum( rate( apisix_http_status{ route=~"default_podinfo-podinfo-canary_.+" }[1m] ) ) * 100',
    ),
    (
        "apisix",
        {
            "namespace": "default",
            "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"},
        },
        DURATION,
        'histogram_quantile( 0.99, sum( rate( apisix_http_latency_bucket{ type=~"request", '
        'route=~"default_podinfo-podinfo-canary_.+" }[1m] ) ) by (le) )',
    ),
    (
        "osm",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( osm_request_total{ destination_namespace="default", destination_kind="Deployment", '
        'destination_name="podinfo", response_code!~"5.*" }[1m] ) ) / sum( rate( osm_request_total{ '
        'destination_namespace="default", destination_kind="Deployment", destination_name="podinfo" }[1m] ) ) * 100',
    ),
    (
        "osm",
        {"namespace": "default"},
        DURATION,
        'histogram_quantile( 0.99, sum( rate( osm_request_duration_ms_bucket{ destination_namespace="default", '
        'destination_kind="Deployment", destination_name="podinfo" }[1m] ) ) by (le) )',
    ),
    (
        "kubernetes",
        {"namespace": "default"},
        SUCCESS_RATE,
        'sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="default", '
        'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[1m] ) ) '
        '/ sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="default", '
        'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) * 100',
    ),
    (
        # Flagger's HttpObserver converts seconds to ms in Go; here the query does, so `* 1000` is appended.
        "gatewayapi:v1",
        {"namespace": "default"},
        DURATION,
        'histogram_quantile( 0.99, sum( rate( http_request_duration_seconds_bucket{ kubernetes_namespace="default", '
        'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) by (le) ) * 1000',
    ),
]


def _observer(provider: str, metrics_server: str = "http://prometheus:9090") -> PrometheusObserver:
    observer = builtin_observers(metrics_server)[router_key(provider)]
    assert isinstance(observer, PrometheusObserver)
    return observer


def podinfo(provider: str, *, namespace: str = NAMESPACE, **spec: Any) -> Canary:
    """Flagger's test canary: the Deployment podinfo behind service port 9898."""
    return make_canary(provider, name="podinfo", namespace=namespace, port=9898, **spec)


def _canary(provider: str, spec: Mapping[str, Any]) -> Canary:
    spec = dict(spec)
    namespace = spec.pop("namespace")
    return podinfo(provider, namespace=namespace, **spec)


@pytest.mark.parametrize(
    ("provider", "spec", "metric", "expected"),
    _GOLDEN,
    ids=[f"{provider}-{metric}" for provider, _, metric, _ in _GOLDEN],
)
def test_builtin_query_reads_as_flaggers(provider: str, spec: dict[str, Any], metric: str, expected: str) -> None:
    query = metric_query(canary=_canary(provider, spec), metric=metric)
    assert _observer(provider).query(query) == expected


def test_observers_follow_flaggers_factory() -> None:
    observers = builtin_observers("http://prometheus:9090")
    assert set(observers) == {
        *("istio", "smi", "linkerd", "nginx", "contour", "gloo", "kuma", "appmesh", "traefik", "osm", "apisix"),
        *("skipper", "kubernetes", "gatewayapi", "haproxy"),
    }
    # SMI meshes get Istio's queries, like every provider Flagger's factory does not name.
    assert _observer("smi:v1alpha3").queries == ISTIO_QUERIES
    assert _observer("gatewayapi:v1beta1").queries == HTTP_QUERIES
    assert _observer("kubernetes").queries == HTTP_QUERIES
    assert _observer("haproxy").queries == HAPROXY_QUERIES
    for observer in observers.values():
        provider = observer.provider(metric_query())
        assert isinstance(provider, PrometheusProvider)
        assert provider.address == "http://prometheus:9090"


def test_the_window_shrinks_to_the_time_since_the_last_route_change() -> None:
    query = metric_query(canary=podinfo("linkerd"), metric=DURATION, since_change=20.4)
    assert "[20s]" in _observer("linkerd").query(query)
    assert "[1m]" not in _observer("linkerd").query(query)


def test_skipper_replaces_non_word_characters_of_names() -> None:
    canary = podinfo(
        "skipper",
        namespace="team-a",
        ingressRef={"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web.ingress"},
    )
    rendered = _observer("skipper").query(metric_query(canary=canary, metric=SUCCESS_RATE))
    assert 'route=~"kube(ew)?_team_a__web_ingress_canary__.*__podinfo_canary(_[0-9]+)?"' in rendered


# ----------------------------------------------------------------------------------------------------------------
# Live: every router's queries on one real Prometheus

SUCCESS_PERCENT = 90.0
P99_MS = 190.0  # 99th rank in the (100, 200] ms bucket: 100 + 100 * (99 - 90) / 10
MEAN_MS = 62.0  # 0.5 * 30 + 0.4 * 80 + 0.1 * 150
SECONDS = 1.0
MILLISECONDS = 1000.0


@dataclass(frozen=True)
class Traffic:
    per_second_by_code: Mapping[str, float]
    latencies_seconds: Mapping[float, float]  # share of requests by latency

    def latency_rates(self, rate: float, unit: float) -> dict[float, float]:
        return {latency * unit: rate * share for latency, share in self.latencies_seconds.items()}

    @property
    def total(self) -> float:
        return sum(self.per_second_by_code.values())


CANARY = Traffic({"200": 16.0, "404": 2.0, "500": 2.0}, {0.03: 0.5, 0.08: 0.4, 0.15: 0.1})
PRIMARY = Traffic({"200": 5.0, "503": 5.0}, {0.4: 1.0})


def _code(label: str) -> Callable[[str], dict[str, str]]:
    return lambda code: {label: code}


def serve(
    exporter: MetricsExporter,
    traffic: Traffic,
    labels: Mapping[str, str],
    *,
    code: Callable[[str], dict[str, str]],
    counter: str | None = None,
    histogram: str | None = None,
    unit: float = SECONDS,
    histogram_by_code: bool = True,
) -> None:
    """Serve `traffic` as a request counter and/or a latency histogram (in `unit`s) carrying `labels`."""
    buckets = [bound * unit for bound in (0.05, 0.1, 0.2, 0.5)]
    for status, rate in traffic.per_second_by_code.items():
        if counter is not None:
            exporter.counter(counter, {**labels, **code(status)}).set_rate(rate)
        if histogram is not None and histogram_by_code:
            exporter.histogram(histogram, buckets, {**labels, **code(status)}).set_rates(
                traffic.latency_rates(rate, unit)
            )
    if histogram is not None and not histogram_by_code:
        exporter.histogram(histogram, buckets, labels).set_rates(traffic.latency_rates(traffic.total, unit))


def _istio(exporter: MetricsExporter, ns: str) -> None:
    def workload(name: str, reporter: str = "destination") -> dict[str, str]:
        return {"reporter": reporter, "destination_workload_namespace": ns, "destination_workload": name}

    for traffic, labels in [
        (CANARY, workload("podinfo")),
        (PRIMARY, workload("podinfo-primary")),
        (PRIMARY, workload("podinfo", reporter="source")),
    ]:
        serve(
            exporter,
            traffic,
            labels,
            code=_code("response_code"),
            counter="istio_requests_total",
            histogram="istio_request_duration_milliseconds",
            unit=MILLISECONDS,
        )


def _linkerd(exporter: MetricsExporter, ns: str) -> None:
    def code(status: str) -> dict[str, str]:
        return {"status_code": status, "classification": "failure" if status.startswith("5") else "success"}

    for traffic, deployment, direction in [
        (CANARY, "podinfo", "inbound"),
        (PRIMARY, "podinfo-primary", "inbound"),
        (PRIMARY, "podinfo", "outbound"),
    ]:
        labels = {"namespace": ns, "deployment": deployment, "direction": direction}
        serve(
            exporter,
            traffic,
            labels,
            code=code,
            counter="response_total",
            histogram="response_latency_ms",
            unit=MILLISECONDS,
        )


def _nginx(exporter: MetricsExporter, ns: str) -> None:
    for traffic, canary_backend in [(CANARY, f"{ns}-podinfo-canary-9898"), (PRIMARY, "")]:
        serve(
            exporter,
            traffic,
            {"namespace": ns, "ingress": "podinfo", "canary": canary_backend},
            code=_code("status"),
            counter="nginx_ingress_controller_requests",
            histogram="nginx_ingress_controller_response_duration_seconds",
        )


def _envoy(label: str, canary: str, primary: str) -> Callable[[MetricsExporter, str], None]:
    def populate(exporter: MetricsExporter, ns: str) -> None:
        for traffic, value in [(CANARY, canary), (PRIMARY, primary)]:
            serve(
                exporter,
                traffic,
                {label: value.format(ns=ns)},
                code=_code("envoy_response_code"),
                counter="envoy_cluster_upstream_rq",
                histogram="envoy_cluster_upstream_rq_time",
                unit=MILLISECONDS,
                histogram_by_code=False,
            )

    return populate


def _per_pod(code_label: str, **families: Any) -> Callable[[MetricsExporter, str], None]:
    """Series labelled with the pod, as scraped from the pods themselves (App Mesh's Envoy, the app's own)."""

    def populate(exporter: MetricsExporter, ns: str) -> None:
        for traffic, pod in [(CANARY, "podinfo-6b7d9c5f4-x2k9z"), (PRIMARY, "podinfo-primary-6b7d9c5f4-x2k9z")]:
            labels = {"kubernetes_namespace": ns, "kubernetes_pod_name": pod}
            serve(exporter, traffic, labels, code=_code(code_label), **families)

    return populate


_appmesh = _per_pod(
    "envoy_response_code",
    counter="envoy_cluster_upstream_rq",
    histogram="envoy_cluster_upstream_rq_time",
    unit=MILLISECONDS,
    histogram_by_code=False,
)


def _traefik(exporter: MetricsExporter, ns: str) -> None:
    for traffic, role in [(CANARY, "canary"), (PRIMARY, "primary")]:
        serve(
            exporter,
            traffic,
            {"service": f"{ns}-podinfo-{role}-9898@kubernetescrd", "method": "GET", "protocol": "http"},
            code=_code("code"),
            histogram="traefik_service_request_duration_seconds",
        )


def _skipper(exporter: MetricsExporter, ns: str) -> None:
    encoded = ns.replace("-", "_")
    routes = [
        (CANARY, f"kube_{encoded}__podinfo_canary__podinfo_example_org____podinfo_canary"),
        (PRIMARY, f"kube_{encoded}__podinfo__podinfo_example_org____podinfo"),
    ]
    for traffic, route in routes:
        serve(exporter, traffic, {"route": route}, code=_code("code"), histogram="skipper_response_duration_seconds")
        serve(
            exporter,
            traffic,
            {"route": route},
            code=_code("code"),
            histogram="skipper_serve_route_duration_seconds",
            histogram_by_code=False,
        )


def _osm(exporter: MetricsExporter, ns: str) -> None:
    for traffic, name in [(CANARY, "podinfo"), (PRIMARY, "podinfo-primary")]:
        serve(
            exporter,
            traffic,
            {"destination_namespace": ns, "destination_kind": "Deployment", "destination_name": name},
            code=_code("response_code"),
            counter="osm_request_total",
            histogram="osm_request_duration_ms",
            unit=MILLISECONDS,
            histogram_by_code=False,
        )


def _apisix(exporter: MetricsExporter, ns: str) -> None:
    canary_route, primary_route = f"{ns}_podinfo-podinfo-canary_9898", f"{ns}_podinfo-podinfo-primary_9898"
    for traffic, route in [(CANARY, canary_route), (PRIMARY, primary_route)]:
        serve(
            exporter, traffic, {"route": route, "matched_uri": "/*"}, code=_code("code"), counter="apisix_http_status"
        )
    for traffic, route, kind in [(CANARY, canary_route, "request"), (PRIMARY, canary_route, "upstream")]:
        serve(
            exporter,
            traffic,
            {"type": kind, "route": route},
            code=_code("code"),
            histogram="apisix_http_latency",
            unit=MILLISECONDS,
            histogram_by_code=False,
        )


_http = _per_pod("status", histogram="http_request_duration_seconds")


@dataclass(frozen=True)
class Scenario:
    provider: str
    populate: Callable[[MetricsExporter, str], None]
    duration_ms: float = P99_MS
    spec: Mapping[str, Any] | None = None

    @property
    def namespace(self) -> str:
        # One namespace per router, so routers sharing metric families (Envoy, the app's own) stay apart.
        return f"{router_key(self.provider)}-test"

    def canary(self) -> Canary:
        return podinfo(self.provider, namespace=self.namespace, **dict(self.spec or {}))


_INGRESS = {"ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}}
SCENARIOS = [
    Scenario("istio", _istio),
    Scenario("linkerd", _linkerd),
    Scenario("nginx", _nginx, MEAN_MS, _INGRESS),
    Scenario("contour", _envoy("envoy_cluster_name", "{ns}_podinfo-canary_9898", "{ns}_podinfo-primary_9898")),
    Scenario(
        "gloo",
        _envoy(
            "envoy_cluster_name",
            "{ns}-podinfo-canaryupstream-9898_gloo-system",
            "{ns}-podinfo-primaryupstream-9898_gloo-system",
        ),
    ),
    Scenario("kuma", _envoy("service", "podinfo-canary_{ns}_svc_9898", "podinfo-primary_{ns}_svc_9898")),
    Scenario("appmesh", _appmesh),
    Scenario("traefik", _traefik),
    Scenario("skipper", _skipper, MEAN_MS, _INGRESS),
    Scenario("osm", _osm),
    Scenario(
        "apisix",
        _apisix,
        spec={"routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"}},
    ),
    Scenario("kubernetes", _http),
    Scenario("gatewayapi:v1", _http),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    if prometheus_binary() is None:
        pytest.skip(INSTALL_HINT)
    with MetricsExporter() as exporter:
        for scenario in SCENARIOS:
            scenario.populate(exporter, scenario.namespace)
        scrape = {"job_name": "routers", "honor_labels": True, "static_configs": [{"targets": [exporter.target]}]}
        work_dir: Path = tmp_path_factory.mktemp("prometheus")
        with PrometheusServer(work_dir, scrape_configs=[scrape]) as server:
            yield server


async def _value(server: PrometheusServer, scenario: Scenario, metric: str) -> float | None:
    observer = _observer(scenario.provider, server.url)
    query = metric_query(canary=scenario.canary(), metric=metric, interval="30s")
    return await observer.provider(query).run_query(query, observer.query(query))


async def _eventually(server: PrometheusServer, scenario: Scenario, metric: str) -> float:
    """The value once `rate()` has its two samples (Prometheus scrapes every second)."""
    deadline = time.monotonic() + 15
    while (value := await _value(server, scenario, metric)) is None:
        assert time.monotonic() < deadline, f"{scenario.provider} {metric}: no values after 15s"
        await asyncio.sleep(0.25)
    return value


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.provider for scenario in SCENARIOS])
async def test_builtin_queries_measure_only_the_canary(prometheus: PrometheusServer, scenario: Scenario) -> None:
    success_rate = await _eventually(prometheus, scenario, SUCCESS_RATE)
    duration_ms = await _eventually(prometheus, scenario, DURATION)
    assert success_rate == pytest.approx(SUCCESS_PERCENT, rel=0.01)
    assert duration_ms == pytest.approx(scenario.duration_ms, rel=0.02)


async def test_a_canary_without_traffic_has_no_values(prometheus: PrometheusServer) -> None:
    await _eventually(prometheus, SCENARIOS[0], SUCCESS_RATE)  # Prometheus has scraped: istio series exist
    query = metric_query(canary=podinfo("istio", namespace="idle"), metric=SUCCESS_RATE)
    observer = _observer("istio", prometheus.url)
    assert await observer.provider(query).run_query(query, observer.query(query)) is None
