"""The Datadog provider through `datadog-api-client` against a stand-in of Datadog's API v1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
)
from activities.metrics.datadog import DatadogProvider
from canaryflow.spec import MetricTemplate
from tests.helpers.errors import raised
from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.queries import metric_query, metric_template, write_secret
from tests.metrics.standins.datadog import DatadogStandIn

API_KEY = "dd-api-4f1c9e77"
APPLICATION_KEY = "dd-app-8b20d3aa"
QUERY = "sum:trace.http.request.errors{service:checkout}.as_count()"


@pytest.fixture
def datadog() -> Iterator[DatadogStandIn]:
    with DatadogStandIn(API_KEY, APPLICATION_KEY) as standin:
        yield standin


@pytest.fixture
def credentials(secrets_dir: Path) -> Path:
    write_secret(secrets_dir, "datadog", {"datadog_api_key": API_KEY, "datadog_application_key": APPLICATION_KEY})
    return secrets_dir


def template_for(standin: DatadogStandIn, query: str = QUERY, secret: str | None = "datadog") -> MetricTemplate:
    return metric_template("datadog", query, secret=secret, address=standin.url)


@pytest.mark.parametrize(("interval", "window_seconds"), [("1m", 600), ("30s", 300), ("1m30s", 900)])
async def test_returns_the_oldest_point_of_a_window_ten_intervals_long(
    datadog: DatadogStandIn, credentials: Path, interval: str, window_seconds: int
) -> None:
    now = int(time.time())
    datadog.series[QUERY] = [
        [(now - window_seconds - 30, 99.0), (now - window_seconds + 20, 0.25), (now - 60, 0.9), (now - 5, 0.1)]
    ]
    before = int(time.time())
    value = await DatadogProvider().run_query(metric_query(template_for(datadog), interval=interval), f"\n{QUERY}\n")
    after = int(time.time())

    assert value == 0.25
    request = datadog.last
    assert (request.method, request.path) == ("GET", "/api/v1/query")
    assert request.header("DD-API-KEY") == API_KEY
    assert request.header("DD-APPLICATION-KEY") == APPLICATION_KEY
    assert request.param("query") == QUERY
    start, end = int(request.param("from") or 0), int(request.param("to") or 0)
    assert before <= end <= after
    assert end - start == window_seconds


async def test_the_window_is_not_shrunk_to_the_last_route_change(datadog: DatadogStandIn, credentials: Path) -> None:
    datadog.series[QUERY] = [[(int(time.time()) - 500, 3.0)]]
    query = metric_query(template_for(datadog), interval="1m", since_change=20.0)
    assert await DatadogProvider().run_query(query, QUERY) == 3.0
    assert int(datadog.last.param("to") or 0) - int(datadog.last.param("from") or 0) == 600


async def test_first_series_wins_when_a_query_returns_several(datadog: DatadogStandIn, credentials: Path) -> None:
    now = int(time.time())
    datadog.series[QUERY] = [[(now - 100, 7.0)], [(now - 200, 8.0)]]
    assert await DatadogProvider().run_query(metric_query(template_for(datadog)), QUERY) == 7.0


@pytest.mark.parametrize("points", [[], [(-400, None), (-100, 2.0)]], ids=["no-series", "null-first-point"])
async def test_no_values(datadog: DatadogStandIn, credentials: Path, points: list[tuple[int, float | None]]) -> None:
    now = int(time.time())
    datadog.series[QUERY] = [[(now + offset, value) for offset, value in points]] if points else []
    assert await DatadogProvider().run_query(metric_query(template_for(datadog)), QUERY) is None


async def test_wrong_keys_are_an_auth_failure_naming_the_secret(datadog: DatadogStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "datadog", {"datadog_api_key": "dd-api-revoked", "datadog_application_key": "dd-app-x"})
    error = await raised(DatadogProvider().run_query(metric_query(template_for(datadog)), QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "HTTP 403" in error.message
    assert "shop/datadog" in error.message and "datadog_api_key" in error.message
    assert "dd-api-revoked" not in error.message and "dd-app-x" not in error.message


async def test_a_secret_without_the_application_key_is_an_auth_failure(
    datadog: DatadogStandIn, secrets_dir: Path
) -> None:
    write_secret(secrets_dir, "datadog", {"datadog_api_key": API_KEY})
    error = await raised(DatadogProvider().run_query(metric_query(template_for(datadog)), QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "shop/datadog" in error.message and "`datadog_application_key`" in error.message
    assert API_KEY not in error.message
    assert datadog.seen == []


async def test_a_template_without_secret_ref_is_an_auth_failure(datadog: DatadogStandIn, credentials: Path) -> None:
    error = await raised(DatadogProvider().run_query(metric_query(template_for(datadog, secret=None)), QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "secretRef" in error.message and "MetricTemplate shop/datadog-errors" in error.message


async def test_a_rejected_query_is_invalid(datadog: DatadogStandIn, credentials: Path) -> None:
    error = await raised(DatadogProvider().run_query(metric_query(template_for(datadog)), "syntax error {"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert error.non_retryable
    assert "Error parsing query" in error.message


async def test_a_slow_answer_is_retryable(datadog: DatadogStandIn, credentials: Path) -> None:
    datadog.delay_seconds = 2.0
    error = await raised(DatadogProvider(timeout_seconds=0.3).run_query(metric_query(template_for(datadog)), QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert "0.3s" in error.message


async def test_a_server_error_is_retryable(datadog: DatadogStandIn, credentials: Path) -> None:
    datadog.override = ScriptedResponse(status=503, body={"errors": ["Service Unavailable"]})
    error = await raised(DatadogProvider().run_query(metric_query(template_for(datadog)), QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert "HTTP 503" in error.message


async def test_nothing_listening_is_retryable(credentials: Path) -> None:
    with DatadogStandIn(API_KEY, APPLICATION_KEY) as stopped:
        template = template_for(stopped)
    error = await raised(DatadogProvider().run_query(metric_query(template), QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert "Connection refused" in error.message


@pytest.mark.parametrize(
    "body", ["<html>gateway</html>", {"series": "none"}, {"series": [{"pointlist": [[1.0]]}]}], ids=str
)
async def test_an_answer_that_is_not_datadogs_fails_the_query(
    datadog: DatadogStandIn, credentials: Path, body: str | dict[str, Any]
) -> None:
    datadog.override = ScriptedResponse(status=200, body=body)
    error = await raised(DatadogProvider().run_query(metric_query(template_for(datadog)), QUERY))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "Datadog API" in error.message and "provider.address" in error.message


async def test_is_online_validates_the_api_key(datadog: DatadogStandIn, credentials: Path) -> None:
    assert await DatadogProvider().is_online(metric_query(template_for(datadog))) is True
    assert datadog.last.path == "/api/v1/validate"
    assert datadog.last.header("DD-API-KEY") == API_KEY


async def test_is_online_with_a_revoked_key_is_an_auth_failure(datadog: DatadogStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "datadog", {"datadog_api_key": "dd-api-revoked", "datadog_application_key": "x-app"})
    error = await raised(DatadogProvider().is_online(metric_query(template_for(datadog))))
    assert error.type == ERR_METRIC_AUTH_FAILED
