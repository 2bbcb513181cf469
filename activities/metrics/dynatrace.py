"""Flagger's Dynatrace metric provider (MetricTemplate `provider.type: dynatrace`): Metrics API v2.

`GET <address>/api/v2/metrics/query?metricSelector=<query>&resolution=Inf&from=<ms>&to=<ms>` with
`Authorization: Api-Token <dynatrace_token>` (the template's secretRef). The window is the last ten metric
intervals, folded into one point by `resolution=Inf`; the value is the first point of the last series of the first
metric, as in Flagger. No series, no points or a null point (Dynatrace's gap) means "no values".
`is_online` lists one metric descriptor (`/api/v2/metrics?pageSize=1`) with the same token.
"""

from __future__ import annotations

import math
from typing import Any

from activities.contracts import MetricQuery
from activities.metrics.common import (
    QUERY_TIMEOUT_SECONDS,
    describe,
    excerpt,
    http_address,
    http_error,
    http_get,
    json_error_detail,
    lookback_window_ms,
    query_failed,
    service_label,
    template_credentials,
    template_of,
)

PROVIDER = "dynatrace"
QUERY_PATH = "/api/v2/metrics/query"
VALIDATION_PATH = "/api/v2/metrics"
TOKEN_KEY = "dynatrace_token"


class DynatraceProvider:
    def __init__(self, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        template = template_of(query, PROVIDER)
        start_ms, end_ms = lookback_window_ms(query, template)
        params = {"metricSelector": rendered, "resolution": "Inf", "from": str(start_ms), "to": str(end_ms)}
        body = await self._get(query, QUERY_PATH, params, rendered)
        return _first_point(body, describe(template))

    async def is_online(self, query: MetricQuery) -> bool:
        await self._get(query, VALIDATION_PATH, {"pageSize": "1"}, "(metric list)")
        return True

    async def _get(self, query: MetricQuery, path: str, params: dict[str, str], query_text: str) -> Any:
        template = template_of(query, PROVIDER)
        address = http_address(template.spec.provider.address, None, template, PROVIDER)
        token = template_credentials(template, PROVIDER, (TOKEN_KEY,), secret_required=True)[TOKEN_KEY]
        service = service_label("Dynatrace", address, template)
        response = await http_get(
            address + path,
            service=service,
            timeout_seconds=self.timeout_seconds,
            verify_tls=not template.spec.provider.insecure_skip_verify,
            params=params,
            headers={"Authorization": f"Api-Token {token}", "Accept": "application/json"},
        )
        if response.status_code != 200:
            detail = excerpt(json_error_detail(response, "error", "message"), [token])
            raise http_error(
                response.status_code,
                service=service,
                detail=detail,
                query=query_text,
                auth_hint=f"check `{TOKEN_KEY}` in the secret (an access token with the metrics.read scope)",
            )
        try:
            return response.json()
        except ValueError:
            raise query_failed(f"{service} did not answer with JSON; check spec.provider.address") from None


def _first_point(body: Any, where: str) -> float | None:
    try:
        results = body["result"]
        if not results:
            return None
        series = results[0]["data"]
        if not series:
            return None
        values = series[-1]["values"]
    except (KeyError, IndexError, TypeError):
        raise query_failed(
            f"Dynatrace's answer for {where} has no result[].data[].values; check spec.provider.address"
        ) from None
    if not isinstance(values, list) or not values or values[0] is None:
        return None
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise query_failed(f"Dynatrace returned the non-numeric value {value!r} for {where}")
    return None if math.isnan(value) else float(value)
