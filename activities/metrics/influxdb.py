"""Flagger's InfluxDB metric provider (MetricTemplate `provider.type: influxdb`): Flux through `influxdb-client`.

A query is `POST <address>/api/v2/query?org=<org>` (`QueryApi.query`, annotated CSV back) with
`Authorization: Token <token>`, 15 s timeout like Flagger. The value is the `_value` of the first record.
A null value, and (unlike Flagger, which returns 0) an empty result, mean "no values" (None). Integer values
(`count()`) are accepted as well as floats. The window is the query's own `range(start: -{{ interval }})`.
`is_online` runs `from(bucket: "default") |> range(start: -2h)`: an answer that accepts the token counts,
even when that bucket does not exist.

Secret keys (template namespace), both required when there is a secretRef: `token`, `org`.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

from influxdb_client.client.flux_csv_parser import FluxCsvParserException, FluxQueryException
from influxdb_client.client.flux_table import TableList
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_METRIC_QUERY_INVALID, MetricQuery
from activities.metrics.common import (
    excerpt,
    http_address,
    http_error,
    query_failed,
    query_invalid,
    service_label,
    template_credentials,
    template_of,
    urllib3_transport_errors,
)

PROVIDER = "influxdb"
TOKEN_SECRET_KEY = "token"
ORG_SECRET_KEY = "org"
QUERY_TIMEOUT_SECONDS = 15.0
ONLINE_QUERY = 'from(bucket: "default") |> range(start: -2h)'


@dataclass(frozen=True)
class _Server:
    address: str
    token: str
    org: str
    verify_tls: bool
    service: str  # "InfluxDB at <address> (MetricTemplate ns/name, secret ns/name)", for messages

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(value for value in (self.token, self.org) if value)


class InfluxDBProvider:
    """Runs Flux queries for a MetricTemplate (address, secretRef, insecureSkipVerify)."""

    def __init__(self, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        server = _server(query)
        flux = rendered.strip()
        tables = await asyncio.to_thread(self._query, server, flux)
        return _first_value(server, flux, tables)

    async def is_online(self, query: MetricQuery) -> bool:
        server = _server(query)
        try:
            await asyncio.to_thread(self._query, server, ONLINE_QUERY)
        except ApplicationError as error:
            if error.type != ERR_METRIC_QUERY_INVALID:  # e.g. no bucket "default": yet it answered
                raise
        return True

    def _query(self, server: _Server, flux: str) -> TableList:
        client = InfluxDBClient(
            url=server.address,
            token=server.token,
            org=server.org,
            timeout=int(self.timeout_seconds * 1000),
            verify_ssl=server.verify_tls,
            retries=False,  # retries belong to the activity's retry policy
        )
        try:
            with urllib3_transport_errors(server.service, self.timeout_seconds):
                return client.query_api().query(flux, org=server.org)
        except ApiException as error:
            raise _http_error(server, flux, error) from None
        except FluxQueryException as error:
            # An error table in a 200 answer: the query failed while running.
            raise query_invalid(
                f"{server.service} failed the query: {excerpt(str(error.message), server.secrets)}: {flux}"
            ) from None
        except (FluxCsvParserException, ValueError, IndexError, KeyError, TypeError):
            raise query_failed(
                f"{server.service} did not answer like the InfluxDB v2 query API (annotated CSV); "
                "check provider.address"
            ) from None
        finally:
            client.close()  # type: ignore[no-untyped-call]


def _server(query: MetricQuery) -> _Server:
    template = template_of(query, PROVIDER)
    settings = template.spec.provider
    address = http_address(settings.address, None, template, PROVIDER)
    credentials = template_credentials(template, PROVIDER, (TOKEN_SECRET_KEY, ORG_SECRET_KEY), secret_required=False)
    return _Server(
        address=address,
        token=credentials.get(TOKEN_SECRET_KEY, ""),
        org=credentials.get(ORG_SECRET_KEY, ""),
        verify_tls=not settings.insecure_skip_verify,
        service=service_label("InfluxDB", address, template),
    )


def _first_value(server: _Server, flux: str, tables: TableList) -> float | None:
    for table in tables:
        for record in table.records:
            value: Any = record.get_value()  # type: ignore[no-untyped-call]
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise query_invalid(
                    f"{server.service} returned a {type(value).__name__} `_value`, not a number; "
                    f"reduce the query to a numeric value: {flux}"
                )
            number = float(value)
            return None if math.isnan(number) else number
    return None


def _http_error(server: _Server, flux: str, error: ApiException) -> ApplicationError:
    body = error.body.decode("utf-8", errors="replace") if isinstance(error.body, bytes) else error.body
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return http_error(
        int(error.status or 0),
        service=server.service,
        detail=excerpt(str(message) if message is not None else body, server.secrets),
        query=flux,
        auth_hint=f"check `{TOKEN_SECRET_KEY}` (an API token with read access) and `{ORG_SECRET_KEY}` in the secret",
        invalid_status=(400, 404, 422),
    )
