"""Flagger's New Relic metric provider (MetricTemplate `provider.type: newrelic`): NRQL over the Insights query API.

A query is `GET <address>/v1/accounts/<account id>/query?nrql=<query> SINCE <n> seconds ago` with the key in
`X-Query-Key`, 5 s timeout. `<n>` is the metric interval in whole seconds, shrunk like Prometheus windows to the
time since the last route change (NRQL's SINCE is the averaging window itself). The value is the `result` field
of the only row (what NRQL names an arithmetic expression); a row with a single other numeric field, such as
`average`, is read too. Not exactly one row, or a null value, means "no values" (None).

Secret keys (template namespace): `newrelic_account_id`, `newrelic_query_key`. Address default
`https://insights-api.newrelic.com` (`https://insights-api.eu.newrelic.com` for EU accounts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from activities.contracts import MetricQuery
from activities.metrics.common import (
    QUERY_TIMEOUT_SECONDS,
    excerpt,
    http_address,
    http_error,
    http_get,
    interval_seconds,
    query_failed,
    query_invalid,
    service_label,
    template_credentials,
    template_of,
)
from activities.metrics.prometheus import DEFAULT_WINDOW_FLOOR_SECONDS, effective_window

PROVIDER = "newrelic"
DEFAULT_ADDRESS = "https://insights-api.newrelic.com"
ACCOUNT_ID_SECRET_KEY = "newrelic_account_id"
QUERY_KEY_SECRET_KEY = "newrelic_query_key"
ONLINE_QUERY = "SELECT * FROM Metric"


@dataclass(frozen=True)
class _Account:
    endpoint: str
    query_key: str
    account_id: str
    verify_tls: bool
    service: str  # "New Relic at <address> (MetricTemplate ns/name, secret ns/name)", for messages

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.query_key, self.account_id)


class NewRelicProvider:
    """Runs NRQL queries for a MetricTemplate (address, secretRef, insecureSkipVerify)."""

    def __init__(
        self,
        *,
        timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
        window_floor_seconds: float = DEFAULT_WINDOW_FLOOR_SECONDS,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.window_floor_seconds = window_floor_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        account = _account(query)
        nrql = f"{rendered.strip()} SINCE {self._since_seconds(query)} seconds ago"
        return _only_result(account, nrql, await self._fetch(account, nrql))

    async def is_online(self, query: MetricQuery) -> bool:
        account = _account(query)
        await self._fetch(account, f"{ONLINE_QUERY} SINCE {self._since_seconds(query)} seconds ago")
        return True

    def _since_seconds(self, query: MetricQuery) -> int:
        window = effective_window(query.interval, query.since_last_route_change_seconds, self.window_floor_seconds)
        return int(interval_seconds(window, template_of(query, PROVIDER)))

    async def _fetch(self, account: _Account, nrql: str) -> Any:
        response = await http_get(
            account.endpoint,
            service=account.service,
            timeout_seconds=self.timeout_seconds,
            verify_tls=account.verify_tls,
            params={"nrql": nrql},
            headers={"X-Query-Key": account.query_key, "Accept": "application/json"},
        )
        if response.status_code != 200:
            raise _http_error(account, nrql, response)
        try:
            return response.json()
        except ValueError:
            raise _not_newrelic(account) from None


def _account(query: MetricQuery) -> _Account:
    template = template_of(query, PROVIDER)
    settings = template.spec.provider
    credentials = template_credentials(
        template, PROVIDER, (ACCOUNT_ID_SECRET_KEY, QUERY_KEY_SECRET_KEY), secret_required=True
    )
    address = http_address(settings.address, DEFAULT_ADDRESS, template, PROVIDER)
    account_id = credentials[ACCOUNT_ID_SECRET_KEY].strip()
    return _Account(
        endpoint=f"{address}/v1/accounts/{quote(account_id, safe='')}/query",
        query_key=credentials[QUERY_KEY_SECRET_KEY],
        account_id=account_id,
        verify_tls=not settings.insecure_skip_verify,
        service=service_label("New Relic", address, template),
    )


def _only_result(account: _Account, nrql: str, body: Any) -> float | None:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise _not_newrelic(account)
    results = body["results"]
    if len(results) != 1:
        return None
    row = results[0]
    if not isinstance(row, dict):
        raise _not_newrelic(account)
    if "result" in row:
        value = row["result"]
    elif len(row) == 1:
        value = next(iter(row.values()))
    else:
        raise query_invalid(
            f"{account.service} returned the fields {', '.join(sorted(row))} rather than one value; select a "
            f"single expression: {nrql}"
        )
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise query_invalid(f"{account.service} returned the non-numeric value {excerpt(repr(value))}: {nrql}")
    number = float(value)
    return None if math.isnan(number) else number


def _http_error(account: _Account, nrql: str, response: httpx.Response) -> ApplicationError:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    return http_error(
        response.status_code,
        service=account.service,
        detail=excerpt(str(detail) if detail is not None else response.text, account.secrets),
        query=nrql,
        auth_hint=f"check `{QUERY_KEY_SECRET_KEY}` (an Insights query key) and `{ACCOUNT_ID_SECRET_KEY}` in the secret",
    )


def _not_newrelic(account: _Account) -> ApplicationError:
    return query_failed(
        f"{account.service} did not answer like the New Relic Insights API (no JSON `results`); check provider.address"
    )
