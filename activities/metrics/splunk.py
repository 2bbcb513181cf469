"""Flagger's Splunk Observability (SignalFx) metric provider (MetricTemplate `provider.type: splunk`).

The query is a SignalFlow program, run once over the last ten metric intervals (`immediate=true`). Flagger streams
it over SignalFlow's WebSocket; this provider uses SignalFlow's HTTP form of the same computation:
`POST <stream address>/v2/signalflow/execute?start=<ms>&stop=<ms>&immediate=true` with the program as text/plain
and `X-SF-Token: <sf_token_key>`, answered as Server-Sent Events (`control-message`, `metadata`, `data`, `error`).

The template's address is the API address (`https://api.<realm>.signalfx.com`); the stream host is the same with
`api.` replaced by `stream.` (Flagger's mapping). The value is the last non-null datapoint; datapoints from more
than one time series are an error (aggregate them in the program), none at all is "no values".
`is_online` reads one metric (`GET <api address>/v2/metric?limit=1`) with the same token.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from temporalio.exceptions import ApplicationError

from activities.contracts import MetricQuery
from activities.metrics.common import (
    QUERY_TIMEOUT_SECONDS,
    describe,
    excerpt,
    http_address,
    http_error,
    http_get,
    http_post_stream,
    json_error_detail,
    lookback_window_ms,
    query_failed,
    query_invalid,
    service_label,
    template_credentials,
    template_of,
)
from canaryflow.spec import MetricTemplate

PROVIDER = "splunk"
EXECUTE_PATH = "/v2/signalflow/execute"
VALIDATION_PATH = "/v2/metric"
TOKEN_KEY = "sf_token_key"


@dataclass(frozen=True)
class _Event:
    name: str
    data: str


class SplunkProvider:
    def __init__(self, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        template = template_of(query, PROVIDER)
        where = describe(template)
        address = stream_address(_address(template))
        token = template_credentials(template, PROVIDER, (TOKEN_KEY,), secret_required=True)[TOKEN_KEY]
        service = service_label("Splunk SignalFlow", address, template)
        start_ms, stop_ms = lookback_window_ms(query, template)
        async with http_post_stream(
            address + EXECUTE_PATH,
            service=service,
            timeout_seconds=self.timeout_seconds,
            verify_tls=not template.spec.provider.insecure_skip_verify,
            params={"start": str(start_ms), "stop": str(stop_ms), "immediate": "true"},
            content=rendered,
            headers={"X-SF-Token": token, "Content-Type": "text/plain", "Accept": "text/event-stream"},
        ) as response:
            points = await _read_computation(response, service, where, rendered, token)
        return _single_series_value(points, where, rendered)

    async def is_online(self, query: MetricQuery) -> bool:
        template = template_of(query, PROVIDER)
        address = api_address(_address(template))
        token = template_credentials(template, PROVIDER, (TOKEN_KEY,), secret_required=True)[TOKEN_KEY]
        service = service_label("Splunk API", address, template)
        response = await http_get(
            address + VALIDATION_PATH,
            service=service,
            timeout_seconds=self.timeout_seconds,
            verify_tls=not template.spec.provider.insecure_skip_verify,
            params={"limit": "1"},
            headers={"X-SF-Token": token},
        )
        if response.status_code != 200:
            raise _status_error(service, response, "(metric list)", token)
        return True


def _address(template: MetricTemplate) -> str:
    """The template's address; a `wss://stream.` address (Flagger accepts both forms) is read as https."""
    address = (template.spec.provider.address or "").strip()
    for websocket, http in (("wss://", "https://"), ("ws://", "http://")):
        if address.startswith(websocket):
            address = http + address.removeprefix(websocket)
    return http_address(address, None, template, PROVIDER)


def _status_error(service: str, response: httpx.Response, query_text: str, token: str) -> ApplicationError:
    return http_error(
        response.status_code,
        service=service,
        detail=excerpt(json_error_detail(response, "message"), [token]),
        query=query_text,
        auth_hint=f"check `{TOKEN_KEY}` in the secret (an org access token with API permission)",
    )


def stream_address(address: str) -> str:
    """`https://api.us1.signalfx.com` -> `https://stream.us1.signalfx.com`; a `wss://stream.` address -> https."""
    return _with_host_prefix(address, "api.", "stream.")


def api_address(address: str) -> str:
    return _with_host_prefix(address, "stream.", "api.")


def _with_host_prefix(address: str, old: str, new: str) -> str:
    parts = urlsplit(address)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    netloc = new + parts.netloc[len(old) :] if parts.netloc.startswith(old) else parts.netloc
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


async def _read_computation(
    response: httpx.Response, service: str, where: str, program: str, token: str
) -> list[tuple[str, float]]:
    if response.status_code != 200:
        await response.aread()
        raise _status_error(service, response, program, token)
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise query_failed(
            f"{service} did not answer with a SignalFlow event stream; "
            "check spec.provider.address (https://api.<realm>.signalfx.com)"
        )
    return await _datapoints(_events(response.aiter_lines()), where, program)


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[_Event]:
    """Server-Sent Events: `event:` and `data:` fields, dispatched on a blank line."""
    name, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield _Event(name, "\n".join(data))
            name, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield _Event(name, "\n".join(data))


async def _datapoints(events: AsyncIterator[_Event], where: str, program: str) -> list[tuple[str, float]]:
    points: list[tuple[str, float]] = []
    async for event in events:
        payload = _json(event, where)
        if event.name == "data":
            points.extend(_data_points(payload, where))
        elif event.name == "error":
            raise query_invalid(f"SignalFlow could not run the program of {where} ({_errors(payload)}): {program}")
        elif event.name == "control-message":
            control = payload.get("event")
            if control == "END_OF_CHANNEL":
                break
            if control == "CHANNEL_ABORT":
                raise query_failed(f"SignalFlow aborted the computation of {where}: {payload.get('abortInfo')}")
    return points


def _json(event: _Event, where: str) -> dict[str, Any]:
    try:
        payload = json.loads(event.data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise query_failed(f"SignalFlow sent a {event.name!r} event that is not a JSON object ({where})")
    return payload


def _data_points(payload: dict[str, Any], where: str) -> list[tuple[str, float]]:
    points: list[tuple[str, float]] = []
    data = payload.get("data")
    if not isinstance(data, list):
        raise query_failed(f"SignalFlow sent a data event without a `data` list ({where})")
    for datum in data:
        value = datum.get("value") if isinstance(datum, dict) else None
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise query_failed(f"SignalFlow sent the non-numeric value {value!r} ({where})")
        if not math.isnan(value):
            points.append((str(datum.get("tsId")), float(value)))
    return points


def _single_series_value(points: list[tuple[str, float]], where: str, program: str) -> float | None:
    if not points:
        return None
    series = {ts_id for ts_id, _ in points}
    if len(series) > 1:
        raise query_invalid(
            f"the SignalFlow program of {where} returned {len(series)} time series; "
            f"aggregate them to one (e.g. .sum() or .mean()): {program}"
        )
    return points[-1][1]


def _errors(payload: dict[str, Any]) -> str:
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(
            str(error.get("message") or error.get("code")) if isinstance(error, dict) else str(error)
            for error in errors
        )
    return "no detail"
