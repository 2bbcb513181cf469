"""Flagger's builtin metrics (`request-success-rate` in percent, `request-duration` P99 in milliseconds) per router.

Each router's two PromQL queries are Flagger's (`pkg/metrics/observers/*.go`), rendered with the MetricTemplate
variables; after whitespace collapsing they read exactly as Flagger's. Where Flagger converts a value in Go (the
HTTP observer reports seconds), the conversion is part of the query here, so every duration comes back in ms.

Which observer serves which `spec.provider` follows Flagger's observer factory, keyed by `router_key(provider)`:
`appmesh:*` and `gloo:*` by prefix, `gatewayapi:*` and `kubernetes` by the app's own HTTP metrics, and everything
else Flagger does not name (`smi:*`) by the Istio queries. `haproxy` is this project's local platform.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from activities.contracts import MetricQuery
from activities.metrics.base import BuiltinMetrics
from activities.metrics.builtin_haproxy import HTTP_QUERIES, POD_SELECTOR, haproxy_observer
from activities.metrics.common import collapse_whitespace
from activities.metrics.prometheus import (
    DEFAULT_WINDOW_FLOOR_SECONDS,
    QUERY_TIMEOUT_SECONDS,
    PrometheusObserver,
    windowed,
)
from activities.metrics.render import render_query, template_model
from workflows.decisions import BUILTIN_DURATION, BUILTIN_SUCCESS_RATE

ISTIO_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        'sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="{{ namespace }}", '
        'destination_workload=~"{{ target }}", response_code!~"5.*" }[{{ interval }}] ) ) '
        '/ sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="{{ namespace }}", '
        'destination_workload=~"{{ target }}" }[{{ interval }}] ) ) * 100'
    ),
    BUILTIN_DURATION: (
        "histogram_quantile( 0.99, sum( rate( istio_request_duration_milliseconds_bucket{ "
        'reporter="destination", destination_workload_namespace="{{ namespace }}", '
        'destination_workload=~"{{ target }}" }[{{ interval }}] ) ) by (le) )'
    ),
}

LINKERD_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        'sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}", '
        'classification!="failure", direction="inbound" }[{{ interval }}] ) ) '
        '/ sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}", '
        'direction="inbound" }[{{ interval }}] ) ) * 100'
    ),
    BUILTIN_DURATION: (
        'histogram_quantile( 0.99, sum( rate( response_latency_ms_bucket{ namespace="{{ namespace }}", '
        'deployment=~"{{ target }}", direction="inbound" }[{{ interval }}] ) ) by (le) )'
    ),
}

# Only the canary ingress' traffic (`canary!=""`); the duration is the mean, not a percentile (ingress-nginx's
# histogram buckets are too coarse for a P99).
NGINX_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        'sum( rate( nginx_ingress_controller_requests{ namespace="{{ namespace }}", ingress="{{ ingress }}", '
        'canary!="", status!~"5.*" }[{{ interval }}] ) ) '
        '/ sum( rate( nginx_ingress_controller_requests{ namespace="{{ namespace }}", ingress="{{ ingress }}", '
        'canary!="" }[{{ interval }}] ) ) * 100'
    ),
    BUILTIN_DURATION: (
        "sum( rate( nginx_ingress_controller_response_duration_seconds_sum{ "
        'namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) ) '
        "/ sum( rate( nginx_ingress_controller_response_duration_seconds_count{ "
        'namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) ) * 1000'
    ),
}


def _envoy_queries(cluster_matcher: str) -> dict[str, str]:
    """Envoy's upstream counters of the canary cluster; `cluster_matcher` is a label matcher with a trailing comma."""
    return {
        BUILTIN_SUCCESS_RATE: (
            f'sum( rate( envoy_cluster_upstream_rq{{ {cluster_matcher} envoy_response_code!~"5.*" }}'
            f"[{{{{ interval }}}}] ) ) / sum( rate( envoy_cluster_upstream_rq{{ {cluster_matcher} }}"
            "[{{ interval }}] ) ) * 100"
        ),
        BUILTIN_DURATION: (
            f"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{{ {cluster_matcher} }}"
            "[{{ interval }}] ) ) by (le) )"
        ),
    }


# Contour names the canary cluster `<namespace>_<service>-canary_<port>`.
CONTOUR_QUERIES = _envoy_queries('envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+",')
# Gloo's canary upstream: `<namespace>-<target>-canaryupstream-<port>_<gloo namespace>`.
GLOO_QUERIES = _envoy_queries(
    'envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+",'
)
# Kuma tags Envoy's series with the Kuma service `<target>-canary_<namespace>_svc_<port>`.
KUMA_QUERIES = _envoy_queries('service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+",')

# App Mesh: the Envoy sidecars of the canary's pods (selected by Prometheus' pod discovery labels).
APPMESH_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        f'sum( rate( envoy_cluster_upstream_rq{{ {POD_SELECTOR}, envoy_response_code!~"5.*" }}[{{{{ interval }}}}] ) ) '
        f"/ sum( rate( envoy_cluster_upstream_rq{{ {POD_SELECTOR} }}[{{{{ interval }}}}] ) ) * 100"
    ),
    BUILTIN_DURATION: (
        f"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{{ {POD_SELECTOR} }}"
        "[{{ interval }}] ) ) by (le) )"
    ),
}

_TRAEFIK_SERVICE = 'service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd"'
TRAEFIK_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        f'sum( rate( traefik_service_request_duration_seconds_bucket{{ {_TRAEFIK_SERVICE}, code!~"5..", '
        f'le="+Inf" }}[{{{{ interval }}}}] ) ) / sum( rate( traefik_service_request_duration_seconds_bucket{{ '
        f'{_TRAEFIK_SERVICE}, le="+Inf" }}[{{{{ interval }}}}] ) ) * 100'
    ),
    BUILTIN_DURATION: (
        f"histogram_quantile( 0.99, sum( rate( traefik_service_request_duration_seconds_bucket{{ "
        f"{_TRAEFIK_SERVICE} }}[{{{{ interval }}}}] ) ) by (le) ) * 1000"
    ),
}

_OSM = 'destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}"'
OSM_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        f'sum( rate( osm_request_total{{ {_OSM}, response_code!~"5.*" }}[{{{{ interval }}}}] ) ) '
        f"/ sum( rate( osm_request_total{{ {_OSM} }}[{{{{ interval }}}}] ) ) * 100"
    ),
    BUILTIN_DURATION: (
        f"histogram_quantile( 0.99, sum( rate( osm_request_duration_ms_bucket{{ {_OSM} }}"
        "[{{ interval }}] ) ) by (le) )"
    ),
}

_APISIX_ROUTE = 'route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+"'
APISIX_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        f'sum( rate( apisix_http_status{{ {_APISIX_ROUTE}, code!~"5.." }}[{{{{ interval }}}}] ) ) '
        f"/ sum( rate( apisix_http_status{{ {_APISIX_ROUTE} }}[{{{{ interval }}}}] ) ) * 100"
    ),
    BUILTIN_DURATION: (
        f'histogram_quantile( 0.99, sum( rate( apisix_http_latency_bucket{{ type=~"request", {_APISIX_ROUTE} }}'
        "[{{ interval }}] ) ) by (le) )"
    ),
}

# Skipper's queries match its route id, built from the canary ingress (`$route` is filled in by SkipperObserver).
SKIPPER_ROUTE = "kube(ew)?_{namespace}__{ingress}_canary__.*__{service}_canary(_[0-9]+)?"
SKIPPER_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        'sum(rate(skipper_response_duration_seconds_bucket{route=~"$route",code!~"5..",le="+Inf"}[{{ interval }}])) '
        '/ sum(rate(skipper_response_duration_seconds_bucket{route=~"$route",le="+Inf"}[{{ interval }}])) * 100'
    ),
    BUILTIN_DURATION: (
        'sum(rate(skipper_serve_route_duration_seconds_sum{route=~"$route"}[{{ interval }}])) '
        '/ sum(rate(skipper_serve_route_duration_seconds_count{route=~"$route"}[{{ interval }}])) * 1000'
    ),
}

# Routers whose queries need nothing but the template variables; `smi` (any mesh behind SMI) falls back to
# Istio's queries, as Flagger's factory does for every provider it does not name.
ROUTER_QUERIES: dict[str, Mapping[str, str]] = {
    "istio": ISTIO_QUERIES,
    "smi": ISTIO_QUERIES,
    "linkerd": LINKERD_QUERIES,
    "nginx": NGINX_QUERIES,
    "contour": CONTOUR_QUERIES,
    "gloo": GLOO_QUERIES,
    "kuma": KUMA_QUERIES,
    "appmesh": APPMESH_QUERIES,
    "traefik": TRAEFIK_QUERIES,
    "osm": OSM_QUERIES,
    "apisix": APISIX_QUERIES,
    "kubernetes": HTTP_QUERIES,
    "gatewayapi": HTTP_QUERIES,
}

_NON_WORD = re.compile(r"\W")


class SkipperObserver(PrometheusObserver):
    """Skipper's route ids replace every non-word character of names with `_`, so the route pattern does too."""

    def __init__(
        self,
        metrics_server: str,
        *,
        window_floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS,
        timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(
            "skipper",
            SKIPPER_QUERIES,
            metrics_server,
            window_floor_seconds=window_floor_seconds,
            timeout_seconds=timeout_seconds,
        )

    def query(self, query: MetricQuery) -> str:
        if query.metric_name not in self.queries:
            return super().query(query)  # raises the "not a builtin metric" error
        model = template_model(query)
        route = SKIPPER_ROUTE.format(
            **{key: _NON_WORD.sub("_", model[key]) for key in ("namespace", "ingress", "service")}
        )
        template = self.queries[query.metric_name].replace("$route", route)
        # Only `{{ interval }}` is left to render, which every model has.
        return collapse_whitespace(render_query(template, windowed(query, self.window_floor_seconds)))


def builtin_observers(
    metrics_server: str,
    *,
    window_floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS,
    timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
) -> dict[str, BuiltinMetrics]:
    """Every router's builtin metrics, keyed by `router_key(spec.provider)`; `metrics_server` is the default
    Prometheus (a canary's `spec.metricsServer` wins)."""
    observers: dict[str, BuiltinMetrics] = {
        router: PrometheusObserver(
            router,
            queries,
            metrics_server,
            window_floor_seconds=window_floor_seconds,
            timeout_seconds=timeout_seconds,
        )
        for router, queries in ROUTER_QUERIES.items()
    }
    observers["skipper"] = SkipperObserver(
        metrics_server, window_floor_seconds=window_floor_seconds, timeout_seconds=timeout_seconds
    )
    observers["haproxy"] = haproxy_observer(
        metrics_server, window_floor_seconds=window_floor_seconds, timeout_seconds=timeout_seconds
    )
    return observers
