"""Flagger's Datadog metric provider (MetricTemplate `provider.type: datadog`), through `datadog-api-client`.

A query is `GET <address>/api/v1/query?query=&from=&to=` (`MetricsApi.query_metrics`) over the last ten metric
intervals, keys in the `DD-API-KEY` / `DD-APPLICATION-KEY` headers, 5 s timeout. The window is not shrunk to the
time since the last route change: like Flagger, the value is the first (oldest) point of the first series, the
start of a window deliberately ten intervals long, because the newest bucket is usually incomplete.
No series, no points or a null first point mean "no values" (None). `is_online` calls `/api/v1/validate`.

Secret keys (template namespace): `datadog_api_key`, `datadog_application_key`. Address default
`https://api.datadoghq.com` (set it for other Datadog sites, e.g. `https://api.datadoghq.eu`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException, OpenApiException
from datadog_api_client.v1.api.authentication_api import AuthenticationApi
from datadog_api_client.v1.api.metrics_api import MetricsApi
from temporalio.exceptions import ApplicationError
from urllib3.util.retry import Retry

from activities.contracts import MetricQuery
from activities.metrics.common import (
    LOOKBACK_INTERVALS,
    QUERY_TIMEOUT_SECONDS,
    excerpt,
    http_address,
    http_error,
    interval_seconds,
    query_failed,
    query_invalid,
    service_label,
    template_credentials,
    template_of,
    unavailable,
    urllib3_transport_errors,
)

PROVIDER = "datadog"
DEFAULT_ADDRESS = "https://api.datadoghq.com"
API_KEY_SECRET_KEY = "datadog_api_key"
APPLICATION_KEY_SECRET_KEY = "datadog_application_key"

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Account:
    address: str
    api_key: str
    application_key: str
    verify_tls: bool
    service: str  # "Datadog at <address> (MetricTemplate ns/name)", for messages

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.api_key, self.application_key)


class DatadogProvider:
    """Runs Datadog metric queries for a MetricTemplate (address, secretRef, insecureSkipVerify)."""

    def __init__(self, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        account = _account(query)
        window = int(LOOKBACK_INTERVALS * interval_seconds(query.interval, template_of(query, PROVIDER)))
        datadog_query = rendered.strip()
        now = int(time.time())
        response = await asyncio.to_thread(
            self._call,
            account,
            datadog_query,
            lambda client: MetricsApi(client).query_metrics(  # type: ignore[no-untyped-call]
                _from=now - window, to=now, query=datadog_query
            ),
        )
        return _first_point(account, datadog_query, response)

    async def is_online(self, query: MetricQuery) -> bool:
        account = _account(query)
        response = await asyncio.to_thread(
            self._call,
            account,
            "(API key validation)",
            lambda client: AuthenticationApi(client).validate(),  # type: ignore[no-untyped-call]
        )
        return bool(response.get("valid", False))  # type: ignore[no-untyped-call]

    def _call(self, account: _Account, datadog_query: str, call: Callable[[ApiClient], _T]) -> _T:
        configuration = Configuration(  # type: ignore[no-untyped-call]
            host=account.address, request_timeout=self.timeout_seconds
        )
        configuration.api_key["apiKeyAuth"] = account.api_key
        configuration.api_key["appKeyAuth"] = account.application_key
        configuration.verify_ssl = account.verify_tls
        configuration.retry_policy = Retry(0, read=False)  # retries belong to the activity's retry policy
        try:
            with urllib3_transport_errors(account.service, self.timeout_seconds), ApiClient(configuration) as client:
                return call(client)
        except ApiException as error:
            raise _api_error(account, datadog_query, error) from None
        except (OpenApiException, ValueError, TypeError, KeyError, AttributeError):
            raise _not_datadog(account) from None


def _account(query: MetricQuery) -> _Account:
    template = template_of(query, PROVIDER)
    settings = template.spec.provider
    credentials = template_credentials(
        template, PROVIDER, (API_KEY_SECRET_KEY, APPLICATION_KEY_SECRET_KEY), secret_required=True
    )
    address = http_address(settings.address, DEFAULT_ADDRESS, template, PROVIDER)
    return _Account(
        address=address,
        api_key=credentials[API_KEY_SECRET_KEY],
        application_key=credentials[APPLICATION_KEY_SECRET_KEY],
        verify_tls=not settings.insecure_skip_verify,
        service=service_label("Datadog", address, template),
    )


def _first_point(account: _Account, datadog_query: str, response: Any) -> float | None:
    if response.get("status") == "error":
        raise query_invalid(
            f"{account.service} rejected the query: {excerpt(response.get('error'), account.secrets)}: {datadog_query}"
        )
    series = response.get("series") or []
    if not series:
        return None
    points = series[0].get("pointlist") or []
    if not points:
        return None
    # A model Point, or the raw pair when the client could not convert it.
    pair = getattr(points[0], "value", points[0])
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise _not_datadog(account)
    value = pair[1]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _not_datadog(account)
    number = float(value)
    return None if math.isnan(number) else number


def _api_error(account: _Account, datadog_query: str, error: ApiException) -> ApplicationError:
    status = int(error.status or 0)
    if status == 0:  # the client reports TLS failures as status 0
        return unavailable(f"cannot reach {account.service}: TLS handshake failed; check insecureSkipVerify")
    return http_error(
        status,
        service=account.service,
        detail=_datadog_errors(error.body, account),
        query=datadog_query,
        auth_hint=f"check `{API_KEY_SECRET_KEY}` and `{APPLICATION_KEY_SECRET_KEY}` in the secret and the site "
        "in provider.address",
    )


def _datadog_errors(body: Any, account: _Account) -> str:
    """Datadog's `{"errors": [...]}` joined, else the start of the body."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return excerpt("; ".join(str(item) for item in body["errors"]), account.secrets)
    return excerpt(body if isinstance(body, str | bytes) else None, account.secrets)


def _not_datadog(account: _Account) -> ApplicationError:
    return query_failed(
        f"{account.service} did not answer like the Datadog API (no series/pointlist of [time, value] pairs); "
        "check provider.address"
    )
