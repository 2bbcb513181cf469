"""The Dynatrace provider against a stand-in of the Metrics API v2, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from activities.contracts import (
    ERR_INVALID_SPEC,
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
    MetricQuery,
)
from activities.metrics.dynatrace import DynatraceProvider
from tests.conftest import free_port
from tests.helpers.errors import raised
from tests.metrics.queries import metric_query, metric_template
from tests.metrics_extra.conftest import SecretStore
from tests.metrics_extra.standins.dynatrace import DynatraceStandIn, series
from tests.metrics_extra.standins.server import serving

TOKEN = "dt0c01.sample-token"
ERROR_RATE = 'builtin:service.errors.total.rate:filter(eq("dt.entity.service","SERVICE-1")):avg'


@pytest.fixture
async def dynatrace() -> AsyncIterator[tuple[DynatraceStandIn, str]]:
    stand_in = DynatraceStandIn(TOKEN, series={ERROR_RATE: [series(1.25, **{"dt.entity.service": "SERVICE-1"})]})
    async with serving(stand_in.app()) as url:
        yield stand_in, url


def _query(address: str, interval: str = "1m") -> MetricQuery:
    template = metric_template("dynatrace", ERROR_RATE, secret="dynatrace", address=address)
    return metric_query(template, interval=interval)


async def test_returns_the_point_of_the_last_ten_intervals(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore
) -> None:
    stand_in, url = dynatrace
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    before_ms = int(time.time() * 1000)
    assert await DynatraceProvider().run_query(_query(url, "30s"), ERROR_RATE) == 1.25
    sent = stand_in.queries[-1]
    assert sent["metricSelector"] == ERROR_RATE
    assert sent["resolution"] == "Inf"
    assert int(sent["to"]) - int(sent["from"]) == 10 * 30_000
    assert before_ms - 1000 <= int(sent["to"]) <= int(time.time() * 1000)


async def test_the_last_series_answers_when_the_selector_splits_by_dimension(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore
) -> None:
    stand_in, url = dynatrace
    stand_in.series[ERROR_RATE] = [series(7.0, service="a"), series(3.5, service="b")]
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    assert await DynatraceProvider().run_query(_query(url), ERROR_RATE) == 3.5


@pytest.mark.parametrize("data", [[], [series(None)]], ids=["no-series", "gap"])
async def test_no_data_is_no_values(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore, data: list[dict[str, object]]
) -> None:
    stand_in, url = dynatrace
    stand_in.series[ERROR_RATE] = data
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    assert await DynatraceProvider().run_query(_query(url), ERROR_RATE) is None


async def test_a_wrong_token_is_an_auth_failure_that_does_not_leak_it(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore
) -> None:
    _, url = dynatrace
    secrets.put("dynatrace", {"dynatrace_token": "dt0c01.revoked"})
    error = await raised(DynatraceProvider().run_query(_query(url), ERROR_RATE))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "MetricTemplate shop/dynatrace-errors" in str(error)
    assert "revoked" not in str(error)


async def test_a_secret_without_the_token_key_names_the_key(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore
) -> None:
    _, url = dynatrace
    secrets.put("dynatrace", {"token": TOKEN})
    error = await raised(DynatraceProvider().run_query(_query(url), ERROR_RATE))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "dynatrace_token" in str(error)


async def test_a_rejected_selector_is_an_invalid_query(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore
) -> None:
    _, url = dynatrace
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    error = await raised(DynatraceProvider().run_query(_query(url), "builtin:nope:("))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "Cannot parse metric selector" in str(error)


async def test_a_slow_server_is_retryable(dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore) -> None:
    stand_in, url = dynatrace
    stand_in.delay_seconds = 1.0
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    error = await raised(DynatraceProvider(timeout_seconds=0.2).run_query(_query(url), ERROR_RATE))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert error.message == (
        f"Dynatrace at {url} (MetricTemplate shop/dynatrace-errors, secret shop/dynatrace) did not answer within 0.2s; "
        "the query is retried"
    )


async def test_an_unreachable_server_is_retryable_and_named_with_its_secret(secrets: SecretStore) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    error = await raised(DynatraceProvider().run_query(_query(url), ERROR_RATE))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert error.message == (
        f"cannot reach Dynatrace at {url} (MetricTemplate shop/dynatrace-errors, secret shop/dynatrace): "
        "Connection refused"
    )


async def test_a_body_that_does_not_match_its_encoding_is_a_failed_query_not_an_unreachable_server(
    secrets: SecretStore,
) -> None:
    async def garbled(request: web.Request) -> web.Response:
        return web.Response(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/api/v2/metrics/query", garbled)
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    async with serving(app) as url:
        error = await raised(DynatraceProvider().run_query(_query(url), ERROR_RATE))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert error.non_retryable
    assert "cannot be decoded" in error.message
    assert "provider.address" in error.message


async def test_an_answer_that_is_not_the_api_is_a_failed_query(
    dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore
) -> None:
    stand_in, url = dynatrace
    stand_in.malformed = True
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    error = await raised(DynatraceProvider().run_query(_query(url), ERROR_RATE))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "spec.provider.address" in str(error)


async def test_is_online_checks_the_token(dynatrace: tuple[DynatraceStandIn, str], secrets: SecretStore) -> None:
    _, url = dynatrace
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    assert await DynatraceProvider().is_online(_query(url)) is True
    secrets.put("dynatrace", {"dynatrace_token": "wrong"})
    assert (await raised(DynatraceProvider().is_online(_query(url)))).type == ERR_METRIC_AUTH_FAILED


async def test_an_address_is_required(secrets: SecretStore) -> None:
    secrets.put("dynatrace", {"dynatrace_token": TOKEN})
    template = metric_template("dynatrace", ERROR_RATE, secret="dynatrace")
    error = await raised(DynatraceProvider().run_query(metric_query(template), ERROR_RATE))
    assert error.type == ERR_INVALID_SPEC
    assert "provider.address" in str(error)
