"""Flagger's Prometheus metric provider (MetricTemplate `provider.type: prometheus`) and the query-window rule.

A query is an instant query (`GET <address>/api/v1/query`, whitespace collapsed, 5 s timeout). The value is the
last sample of the returned vector; an empty vector or NaN means "no values" (None). Credentials come from the
template's `secretRef` (`token` → Bearer, else `username` + `password` → basic auth), read inside the activity
and never put in a message.

Windows: `effective_window` shrinks `{{ interval }}` to the time since traffic last changed, so a `rate(...[1m])`
right after a weight step does not still average the previous step's errors (see local-stack.md §3).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from temporalio.exceptions import ApplicationError
from urllib3.util.retry import Retry

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    MetricQuery,
)
from activities.metrics.common import (
    RETRYABLE_STATUS,
    collapse_whitespace,
    invalid_spec,
    transport_reason,
    unavailable,
)
from activities.metrics.render import TemplateError, render_query
from activities.secrets import SecretError, read_secret
from canaryflow.durations import parse_duration

QUERY_TIMEOUT_SECONDS = 5.0
ONLINE_QUERY = "vector(1)"
# Two scrape intervals of the local stack (1 s): `rate()` needs at least two samples inside the window.
DEFAULT_WINDOW_FLOOR_SECONDS = 2.0


# ----------------------------------------------------------------------------------------------------------------
# Query windows


def duration_seconds(text: str) -> float | None:
    """Seconds in a Go duration such as `1m`, `30s`, `1m30s`, `1.5h` or `500ms`; None if `text` is not one."""
    try:
        return parse_duration(text.strip())
    except ValueError:
        return None


def effective_window(
    interval: str, since_change: float | None, floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS
) -> str:
    """The range to put in `[...]`: `interval`, or the whole seconds since the last route change when fewer.

    Never shorter than `floor_seconds` (rounded up to whole seconds), and never longer than `interval`: an
    interval already below the floor is the user's choice and is kept as written. An interval that is not a
    Go duration is returned unchanged, for Prometheus to judge.
    """
    interval_seconds = duration_seconds(interval)
    if since_change is None or interval_seconds is None or since_change >= interval_seconds:
        return interval
    # Rounded down: a window one second too long would reach back into the previous step.
    seconds = max(math.floor(max(since_change, 0.0)), math.ceil(floor_seconds))
    if seconds >= interval_seconds:
        return interval
    return f"{seconds}s"


def windowed(query: MetricQuery, floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS) -> MetricQuery:
    """`query` with `interval` replaced by its effective window, ready for `render_query`."""
    window = effective_window(query.interval, query.since_last_route_change_seconds, floor_seconds)
    return query if window == query.interval else query.model_copy(update={"interval": window})


# ----------------------------------------------------------------------------------------------------------------
# Provider


@dataclass(frozen=True)
class _Endpoint:
    address: str
    headers: dict[str, str]
    basic_auth: tuple[str, str] | None
    verify_tls: bool

    @property
    def display(self) -> str:
        """The address without any user:password part, for messages."""
        parts = urlsplit(self.address)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PrometheusProvider:
    """Runs instant PromQL queries against one Prometheus.

    With a MetricTemplate in the query, the template's provider settings are used (address, headers, secretRef,
    insecureSkipVerify); without one (builtin metrics) the `address` given here, with no credentials.
    """

    def __init__(self, address: str | None = None, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.address = address
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        return await asyncio.to_thread(self._run_blocking, query, collapse_whitespace(rendered))

    async def is_online(self, query: MetricQuery) -> bool:
        return await self.run_query(query, ONLINE_QUERY) == 1.0

    def _run_blocking(self, query: MetricQuery, promql: str) -> float | None:
        endpoint = self._endpoint(query)
        return _last_sample(promql, endpoint, self._fetch(endpoint, promql))

    def _endpoint(self, query: MetricQuery) -> _Endpoint:
        if query.template is None:
            if not self.address:
                raise invalid_spec(f"no Prometheus address for builtin metric {query.metric_name}")
            return _Endpoint(_checked_address(self.address, "the metrics server"), {}, None, True)
        template = query.template
        settings = template.spec.provider
        where = f"MetricTemplate {template.metadata.namespace}/{template.metadata.name}"
        headers = {name: ", ".join(values) for name, values in (settings.headers or {}).items()}
        basic_auth = None
        if settings.secret_ref is not None:
            credentials = _credentials(settings.secret_ref.name, template.metadata.namespace, where)
            if "token" in credentials:
                if credentials["token"]:  # Flagger: a present but empty token means no authentication
                    headers["Authorization"] = f"Bearer {credentials['token']}"
            elif credentials["username"] and credentials["password"]:
                basic_auth = (credentials["username"], credentials["password"])
        return _Endpoint(
            _checked_address(settings.address or "", f"{where} provider.address"),
            headers,
            basic_auth,
            not settings.insecure_skip_verify,
        )

    def _fetch(self, endpoint: _Endpoint, promql: str) -> Any:
        responses: list[Any] = []
        session = requests.Session()
        session.verify = endpoint.verify_tls
        session.hooks["response"].append(lambda response, *args, **kwargs: responses.append(response))
        client = PrometheusConnect(
            url=endpoint.address.rstrip("/"),
            headers=endpoint.headers or None,
            auth=endpoint.basic_auth,
            session=session,
            timeout=self.timeout_seconds,
            retry=Retry(0, read=False),  # retries belong to the activity's retry policy, not to the client
        )
        try:
            return client.custom_query(promql)
        except PrometheusApiClientException:
            raise _http_error(endpoint, promql, responses[-1]) from None
        except requests.Timeout:
            raise unavailable(
                f"Prometheus at {endpoint.display} did not answer within {self.timeout_seconds:g}s"
            ) from None
        except (ValueError, KeyError, TypeError):
            # requests' JSONDecodeError is also a RequestException: this clause must come first.
            raise ApplicationError(
                f"{endpoint.display} did not answer like the Prometheus API (no JSON data.result); check the address",
                type=ERR_METRIC_QUERY_FAILED,
                non_retryable=True,
            ) from None
        except requests.RequestException as error:
            raise unavailable(f"cannot reach Prometheus at {endpoint.display}: {transport_reason(error)}") from None
        finally:
            session.close()


def _credentials(secret_name: str, namespace: str, where: str) -> dict[str, str]:
    try:
        credentials = read_secret(secret_name, namespace)
    except SecretError as error:
        raise ApplicationError(
            f"{where}: cannot read its secretRef: {error}", type=ERR_METRIC_AUTH_FAILED, non_retryable=True
        ) from None
    if "token" in credentials:
        return credentials
    missing = [key for key in ("username", "password") if key not in credentials]
    if missing:
        raise ApplicationError(
            f"{where}: secret {namespace}/{secret_name} has no `token` and no `{'` and `'.join(missing)}`",
            type=ERR_METRIC_AUTH_FAILED,
            non_retryable=True,
        )
    return credentials


def _checked_address(address: str, what: str) -> str:
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_spec(f"{what} {address!r} is not an http(s) URL")
    return address


def _last_sample(promql: str, endpoint: _Endpoint, result: Any) -> float | None:
    if not isinstance(result, list):
        raise _wrong_result(promql, endpoint, "a non-list result")
    value: float | None = None
    for series in result:
        if not isinstance(series, Mapping):
            # A scalar or string result is `[<time>, "<value>"]` rather than a list of series.
            raise _wrong_result(promql, endpoint, "a scalar, not an instant vector; wrap it in vector(...)")
        if "values" in series:
            raise _wrong_result(promql, endpoint, "a range vector (matrix); reduce it, e.g. with rate(...[1m])")
        sample = series.get("value")
        if not isinstance(sample, list) or len(sample) != 2:
            raise _wrong_result(promql, endpoint, "a series without a value")
        try:
            value = float(sample[1])
        except (TypeError, ValueError):
            raise _wrong_result(promql, endpoint, f"the non-numeric value {sample[1]!r}") from None
    if value is None or math.isnan(value):
        return None
    return value


def _http_error(endpoint: _Endpoint, promql: str, response: Any) -> ApplicationError:
    status: int = response.status_code
    detail = _prometheus_error(response)
    if status in (401, 403):
        return ApplicationError(
            f"Prometheus at {endpoint.display} refused the credentials (HTTP {status}); "
            "check the secretRef's token or username/password",
            type=ERR_METRIC_AUTH_FAILED,
            non_retryable=True,
        )
    if status in (400, 422):
        return ApplicationError(
            f"Prometheus at {endpoint.display} rejected the query (HTTP {status}: {detail}): {promql}",
            type=ERR_METRIC_QUERY_INVALID,
            non_retryable=True,
        )
    if status >= 500 or status in RETRYABLE_STATUS:
        return unavailable(f"Prometheus at {endpoint.display} answered HTTP {status}: {detail}")
    return ApplicationError(
        f"Prometheus at {endpoint.display} answered HTTP {status}: {detail}; check the address",
        type=ERR_METRIC_QUERY_FAILED,
        non_retryable=True,
    )


def _prometheus_error(response: Any) -> str:
    """The API's `error` field when the body is the API's JSON, else the start of the body."""
    text: str = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return text.strip()[:200] or response.reason or "no body"


def _wrong_result(promql: str, endpoint: _Endpoint, what: str) -> ApplicationError:
    return ApplicationError(
        f"Prometheus at {endpoint.display} returned {what}: {promql}",
        type=ERR_METRIC_QUERY_INVALID,
        non_retryable=True,
    )


# ----------------------------------------------------------------------------------------------------------------
# Builtin metrics observed through Prometheus


class PrometheusObserver:
    """Flagger's builtin `request-success-rate` (percent) and `request-duration` (P99, milliseconds) for a router.

    `queries` maps each builtin metric name to a MetricTemplate-style query; `{{ interval }}` is the effective
    window. The queries run on the canary's `spec.metricsServer`, else on `metrics_server`.
    """

    def __init__(
        self,
        router: str,
        queries: Mapping[str, str],
        metrics_server: str,
        *,
        window_floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS,
        timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
    ) -> None:
        self.router = router
        self.queries = dict(queries)
        self.metrics_server = metrics_server
        self.window_floor_seconds = window_floor_seconds
        self.timeout_seconds = timeout_seconds

    def query(self, query: MetricQuery) -> str:
        template = self.queries.get(query.metric_name)
        if template is None:
            known = ", ".join(sorted(self.queries))
            raise invalid_spec(
                f"metric {query.metric_name} has no templateRef and is not a builtin metric of provider "
                f"{self.router} (builtin: {known})"
            )
        try:
            return collapse_whitespace(render_query(template, windowed(query, self.window_floor_seconds)))
        except TemplateError as error:
            raise invalid_spec(str(error)) from error

    def provider(self, query: MetricQuery) -> PrometheusProvider:
        address = query.target.canary.spec.metrics_server or self.metrics_server
        return PrometheusProvider(address, timeout_seconds=self.timeout_seconds)
