"""Builtin metrics for provider `haproxy` (the local platform), and Flagger's HTTP observer queries.

HAProxy (local platform): the success rate comes from HAProxy's own exporter, per server, and the P99 from the
app's `http_request_duration_seconds` histogram (HAProxy 2.6 exports no latency histogram). Both select the
canary by the `canary="<namespace>/<name>"` label that the router's file_sd targets attach to every series, so
the queries do not depend on how the router names its HAProxy backend.

kubernetes / gatewayapi (Flagger's HttpObserver): the app's own `http_request_duration_seconds` metrics, selected
by the Kubernetes pod labels Prometheus' pod discovery adds.

Durations are multiplied by 1000: `request-duration` is compared in milliseconds.
"""

from __future__ import annotations

from activities.metrics.prometheus import DEFAULT_WINDOW_FLOOR_SECONDS, PrometheusObserver
from workflows.decisions import BUILTIN_DURATION, BUILTIN_SUCCESS_RATE

_CANARY = 'canary="{{ namespace }}/{{ name }}"'
_WINDOW = "[{{ interval }}]"


def _success_rate(counter: str, selector: str, success: str) -> str:
    all_rate = f"sum(rate({counter}{{{selector}}}{_WINDOW}))"
    success_rate = f"sum(rate({counter}{{{selector},{success}}}{_WINDOW}))"
    return f"{success_rate} / {all_rate} * 100"


def _p99_milliseconds(histogram_bucket: str, selector: str) -> str:
    return f"histogram_quantile(0.99, sum by (le) (rate({histogram_bucket}{{{selector}}}{_WINDOW}))) * 1000"


def _first_with_traffic(preferred: str, fallback: str) -> str:
    """`preferred` unless it has no traffic in the window (0/0 = NaN, which `>= 0` drops), then `fallback`."""
    return f"({preferred}) >= 0 or ({fallback})"


HAPROXY_QUERIES: dict[str, str] = {
    # HAProxy's counters see the canary's share of routed traffic. Blue/green keeps the canary at weight 0 and its
    # load test calls the canary directly (as in Flagger), so then the app's own request counter answers instead.
    BUILTIN_SUCCESS_RATE: _first_with_traffic(
        _success_rate("haproxy_server_http_responses_total", f'{_CANARY},server="canary"', 'code!="5xx"'),
        _success_rate("http_requests_total", f'{_CANARY},role="canary"', 'status!~"5.."'),
    ),
    BUILTIN_DURATION: _p99_milliseconds("http_request_duration_seconds_bucket", f'{_CANARY},role="canary"'),
}

# Flagger's HttpObserver queries, whitespace as Flagger renders them; Flagger converts the P99 from seconds in Go.
# POD_SELECTOR: the canary's pods by Prometheus' pod discovery labels (App Mesh's queries select them too).
POD_SELECTOR = 'kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
HTTP_QUERIES: dict[str, str] = {
    BUILTIN_SUCCESS_RATE: (
        f'sum( rate( http_request_duration_seconds_count{{ {POD_SELECTOR}, status!~"5.*" }}[{{{{ interval }}}}] ) ) '
        f"/ sum( rate( http_request_duration_seconds_count{{ {POD_SELECTOR} }}[{{{{ interval }}}}] ) ) * 100"
    ),
    BUILTIN_DURATION: (
        f"histogram_quantile( 0.99, sum( rate( http_request_duration_seconds_bucket{{ {POD_SELECTOR} }}"
        "[{{ interval }}] ) ) by (le) ) * 1000"
    ),
}


def haproxy_observer(
    metrics_server: str,
    *,
    window_floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS,
    timeout_seconds: float = 5.0,
) -> PrometheusObserver:
    """The `BuiltinMetrics` for `provider: haproxy`; `metrics_server` is the worker's default Prometheus."""
    return PrometheusObserver(
        "haproxy",
        HAPROXY_QUERIES,
        metrics_server,
        window_floor_seconds=window_floor_seconds,
        timeout_seconds=timeout_seconds,
    )
