"""The Splunk (SignalFx) provider against a SignalFlow stand-in speaking Server-Sent Events over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
    MetricQuery,
)
from activities.metrics.splunk import SplunkProvider, api_address, stream_address
from tests.conftest import free_port
from tests.helpers.errors import raised
from tests.metrics.queries import metric_query, metric_template
from tests.metrics_extra.conftest import SecretStore
from tests.metrics_extra.standins.server import serving
from tests.metrics_extra.standins.signalflow import SignalFlowStandIn

TOKEN = "sf-org-token"
ERRORS = "data('http.errors', filter=filter('service', 'podinfo-canary')).sum().publish()"


@pytest.fixture
async def signalflow() -> AsyncIterator[tuple[SignalFlowStandIn, str]]:
    stand_in = SignalFlowStandIn(TOKEN, programs={ERRORS: [[("AAAAAK", 2.0)], [("AAAAAK", None)], [("AAAAAK", 3.5)]]})
    async with serving(stand_in.app()) as url:
        yield stand_in, url


@pytest.fixture
def token(secrets: SecretStore) -> SecretStore:
    secrets.put("splunk", {"sf_token_key": TOKEN})
    return secrets


def _query(address: str, interval: str = "1m") -> MetricQuery:
    return metric_query(metric_template("splunk", ERRORS, secret="splunk", address=address), interval=interval)


async def test_returns_the_last_datapoint_of_the_window(
    signalflow: tuple[SignalFlowStandIn, str], token: SecretStore
) -> None:
    stand_in, url = signalflow
    before_ms = int(time.time() * 1000)
    assert await SplunkProvider().run_query(_query(url, "2m"), ERRORS) == 3.5
    sent = stand_in.executions[-1]
    assert sent["immediate"] == "true"
    assert int(sent["stop"]) - int(sent["start"]) == 10 * 120_000
    assert before_ms - 1000 <= int(sent["stop"]) <= int(time.time() * 1000)


async def test_no_datapoints_is_no_values(signalflow: tuple[SignalFlowStandIn, str], token: SecretStore) -> None:
    stand_in, url = signalflow
    stand_in.programs[ERRORS] = [[("AAAAAK", None)]]
    assert await SplunkProvider().run_query(_query(url), ERRORS) is None
    stand_in.programs[ERRORS] = []
    assert await SplunkProvider().run_query(_query(url), ERRORS) is None


async def test_more_than_one_time_series_is_an_invalid_query(
    signalflow: tuple[SignalFlowStandIn, str], token: SecretStore
) -> None:
    stand_in, url = signalflow
    stand_in.programs[ERRORS] = [[("AAAAAK", 1.0), ("AAAAAQ", 4.0)]]
    error = await raised(SplunkProvider().run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "2 time series" in str(error)


async def test_a_wrong_token_is_an_auth_failure(
    signalflow: tuple[SignalFlowStandIn, str], secrets: SecretStore
) -> None:
    _, url = signalflow
    secrets.put("splunk", {"sf_token_key": "expired-token"})
    error = await raised(SplunkProvider().run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "MetricTemplate shop/splunk-errors" in str(error)
    assert "expired-token" not in str(error)


async def test_a_program_that_does_not_compile_is_an_invalid_query(
    signalflow: tuple[SignalFlowStandIn, str], token: SecretStore
) -> None:
    _, url = signalflow
    error = await raised(SplunkProvider().run_query(_query(url), "data('x'"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "Failed to parse program" in str(error)


async def test_a_computation_error_event_is_an_invalid_query(
    signalflow: tuple[SignalFlowStandIn, str], token: SecretStore
) -> None:
    stand_in, url = signalflow
    stand_in.failing[ERRORS] = "Too many time series: limit 5000"
    del stand_in.programs[ERRORS]
    error = await raised(SplunkProvider().run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "Too many time series" in str(error)


async def test_a_stream_that_stalls_is_retryable(signalflow: tuple[SignalFlowStandIn, str], token: SecretStore) -> None:
    stand_in, url = signalflow
    stand_in.delay_seconds = 1.0
    error = await raised(SplunkProvider(timeout_seconds=0.2).run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert error.message == (
        f"Splunk SignalFlow at {url} (MetricTemplate shop/splunk-errors, secret shop/splunk) did not answer within "
        "0.2s; the query is retried"
    )


async def test_a_stream_that_trickles_past_the_timeout_is_retryable(token: SecretStore) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(20):  # a keep-alive comment every 0.1 s: no single read waits as long as the timeout
            await response.write(b": keep-alive\n\n")
            await asyncio.sleep(0.1)
        return response

    app = web.Application()
    app.router.add_post("/v2/signalflow/execute", trickle)
    async with serving(app) as url:
        error = await raised(SplunkProvider(timeout_seconds=0.5).run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert "did not answer within 0.5s; the query is retried" in error.message


async def test_a_malformed_event_is_a_failed_query(
    signalflow: tuple[SignalFlowStandIn, str], token: SecretStore
) -> None:
    stand_in, url = signalflow
    stand_in.malformed = True
    error = await raised(SplunkProvider().run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_QUERY_FAILED


async def test_an_unreachable_server_is_retryable(token: SecretStore) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    error = await raised(SplunkProvider().run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert error.message == (
        f"cannot reach Splunk SignalFlow at {url} (MetricTemplate shop/splunk-errors, secret shop/splunk): "
        "Connection refused"
    )
    error = await raised(SplunkProvider().is_online(_query(url)))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert error.message.startswith(f"cannot reach Splunk API at {url} (MetricTemplate shop/splunk-errors, secret")


async def test_a_stream_that_does_not_match_its_encoding_is_a_failed_query(token: SecretStore) -> None:
    async def garbled(request: web.Request) -> web.Response:
        return web.Response(
            body=b"not gzip at all", headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )

    app = web.Application()
    app.router.add_post("/v2/signalflow/execute", garbled)
    async with serving(app) as url:
        error = await raised(SplunkProvider().run_query(_query(url), ERRORS))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert error.non_retryable
    assert error.message == (
        f"Splunk SignalFlow at {url} (MetricTemplate shop/splunk-errors, secret shop/splunk) answered with a body "
        "that cannot be decoded; check provider.address"
    )


async def test_is_online_reads_a_metric_with_the_token(
    signalflow: tuple[SignalFlowStandIn, str], secrets: SecretStore
) -> None:
    _, url = signalflow
    secrets.put("splunk", {"sf_token_key": TOKEN})
    assert await SplunkProvider().is_online(_query(url)) is True
    secrets.put("splunk", {"sf_token_key": "nope"})
    assert (await raised(SplunkProvider().is_online(_query(url)))).type == ERR_METRIC_AUTH_FAILED


def test_the_stream_host_is_derived_from_the_api_host_as_flagger_does() -> None:
    assert stream_address("https://api.us1.signalfx.com") == "https://stream.us1.signalfx.com"
    assert stream_address("wss://stream.eu0.signalfx.com/") == "https://stream.eu0.signalfx.com"
    assert api_address("wss://stream.eu0.signalfx.com") == "https://api.eu0.signalfx.com"
    assert stream_address("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
