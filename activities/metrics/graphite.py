"""Flagger's Graphite metric provider (MetricTemplate `provider.type: graphite`): the render URL API.

The query is the render API's query string (`target=...&from=-5min`), whitespace collapsed; it is sent as
`GET <address>/render?<query>&format=json` (any `format` in the query is replaced), 5 s timeout, with basic
auth when the secret holds `username` and `password`. The value is the last non-null datapoint, the last
target's winning; no non-null datapoint means "no values" (None). `is_online` renders `target=test`.
The window is whatever the query's `from` says (`{{ interval }}` renders the metric interval unchanged).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
from temporalio.exceptions import ApplicationError

from activities.contracts import MetricQuery
from activities.metrics.common import (
    QUERY_TIMEOUT_SECONDS,
    collapse_whitespace,
    excerpt,
    http_address,
    http_error,
    http_get,
    query_failed,
    query_invalid,
    service_label,
    template_credentials,
    template_of,
)

PROVIDER = "graphite"
USERNAME_SECRET_KEY = "username"
PASSWORD_SECRET_KEY = "password"
ONLINE_QUERY = "target=test"


@dataclass(frozen=True)
class _Server:
    render_url: str
    basic_auth: tuple[str, str] | None
    verify_tls: bool
    service: str  # "Graphite at <address> (MetricTemplate ns/name)", for messages

    @property
    def secrets(self) -> tuple[str, ...]:
        if self.basic_auth is None:
            return ()
        # A server echoing the Authorization header would show the pair base64-encoded.
        encoded = base64.b64encode(":".join(self.basic_auth).encode()).decode()
        return (*self.basic_auth, encoded)


class GraphiteProvider:
    """Runs Graphite render queries for a MetricTemplate (address, secretRef, insecureSkipVerify)."""

    def __init__(self, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        server = _server(query)
        render_query = collapse_whitespace(rendered)
        return _last_datapoint(server, await self._render(server, render_query))

    async def is_online(self, query: MetricQuery) -> bool:
        server = _server(query)
        _last_datapoint(server, await self._render(server, ONLINE_QUERY))
        return True

    async def _render(self, server: _Server, render_query: str) -> Any:
        # Line breaks around `&` in a YAML block would otherwise leave blanks at the ends of values.
        pairs = [(key.strip(), value.strip()) for key, value in parse_qsl(render_query, keep_blank_values=True)]
        params = [(key, value) for key, value in pairs if key != "format"]
        if not any(key == "target" for key, _ in params):
            raise query_invalid(f"{server.service}: the query has no `target=`; write a render query string")
        params.append(("format", "json"))
        response = await http_get(
            server.render_url,
            service=server.service,
            timeout_seconds=self.timeout_seconds,
            verify_tls=server.verify_tls,
            params=params,
            basic_auth=server.basic_auth,
        )
        if response.status_code >= 400:
            raise _http_error(server, render_query, response)
        try:
            return response.json()
        except ValueError:
            raise _not_graphite(server) from None


def _server(query: MetricQuery) -> _Server:
    template = template_of(query, PROVIDER)
    settings = template.spec.provider
    address = http_address(settings.address, None, template, PROVIDER)
    credentials = template_credentials(
        template, PROVIDER, (USERNAME_SECRET_KEY, PASSWORD_SECRET_KEY), secret_required=False
    )
    username, password = credentials.get(USERNAME_SECRET_KEY, ""), credentials.get(PASSWORD_SECRET_KEY, "")
    return _Server(
        render_url=f"{address}/render",
        basic_auth=(username, password) if username and password else None,
        verify_tls=not settings.insecure_skip_verify,
        service=service_label("Graphite", address, template),
    )


def _last_datapoint(server: _Server, body: Any) -> float | None:
    if not isinstance(body, list):
        raise _not_graphite(server)
    value: float | None = None
    for series in body:
        if not isinstance(series, dict) or not isinstance(series.get("datapoints"), list):
            raise _not_graphite(server)
        for point in series["datapoints"]:
            if not isinstance(point, list) or len(point) != 2:
                raise _not_graphite(server)
            number = _number(server, point[0])
            if number is not None:
                value = number
    return value


def _number(server: _Server, raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _not_graphite(server)
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise _not_graphite(server) from None
    return None if math.isnan(number) else number


def _http_error(server: _Server, render_query: str, response: httpx.Response) -> ApplicationError:
    return http_error(
        response.status_code,
        service=server.service,
        detail=excerpt(response.text, server.secrets),
        query=render_query,
        auth_hint=f"check `{USERNAME_SECRET_KEY}` and `{PASSWORD_SECRET_KEY}` in the template's secretRef",
    )


def _not_graphite(server: _Server) -> ApplicationError:
    return query_failed(
        f"{server.service} did not answer like the Graphite render API (a JSON list of targets with "
        "[value, timestamp] datapoints); check provider.address"
    )
