"""The InfluxDB provider through `influxdb-client` against a stand-in of the InfluxDB v2 query API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
)
from activities.metrics.influxdb import InfluxDBProvider
from canaryflow.spec import MetricTemplate
from tests.helpers.errors import raised
from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.queries import metric_query, metric_template, write_secret
from tests.metrics.standins.influxdb import InfluxDBStandIn, Value

TOKEN = "influx-token-2d7e91ab"
ORG = "shop-org"
FLUX = """
from(bucket: "canary")
  |> range(start: -1m)
  |> filter(fn: (r) => r._measurement == "http" and r._field == "errors")
  |> sum()
"""


@pytest.fixture
def influxdb() -> Iterator[InfluxDBStandIn]:
    with InfluxDBStandIn(TOKEN, ORG) as standin:
        yield standin


@pytest.fixture
def credentials(secrets_dir: Path) -> Path:
    write_secret(secrets_dir, "influxdb", {"token": TOKEN, "org": ORG})
    return secrets_dir


def template_for(standin: InfluxDBStandIn, secret: str | None = "influxdb") -> MetricTemplate:
    return metric_template("influxdb", FLUX, secret=secret, address=standin.url)


async def test_returns_the_first_record(influxdb: InfluxDBStandIn, credentials: Path) -> None:
    influxdb.buckets["canary"] = [1.4, 6.6]
    assert await InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX) == 1.4
    request = influxdb.last
    assert (request.method, request.path, request.param("org")) == ("POST", "/api/v2/query", ORG)
    assert request.header("Authorization") == f"Token {TOKEN}"
    assert json.loads(request.body)["query"] == FLUX.strip()
    assert influxdb.range_starts == ["-1m"]


async def test_integer_values_are_numbers(influxdb: InfluxDBStandIn, credentials: Path) -> None:
    influxdb.buckets["canary"] = [42]
    assert await InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX) == 42.0


@pytest.mark.parametrize("values", [[], [None, 2.0]], ids=["empty", "null-first"])
async def test_no_values(influxdb: InfluxDBStandIn, credentials: Path, values: list[Value]) -> None:
    influxdb.buckets["canary"] = values
    assert await InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX) is None


async def test_a_text_value_is_an_invalid_query(influxdb: InfluxDBStandIn, credentials: Path) -> None:
    influxdb.buckets["canary"] = ["ok"]
    error = await raised(InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "str `_value`" in error.message


async def test_a_wrong_token_is_an_auth_failure(influxdb: InfluxDBStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "influxdb", {"token": "influx-token-revoked", "org": ORG})
    influxdb.buckets["canary"] = [1.0]
    error = await raised(InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "HTTP 401" in error.message and "shop/influxdb" in error.message and "`token`" in error.message
    assert "influx-token-revoked" not in error.message


async def test_a_secret_without_org_is_an_auth_failure(influxdb: InfluxDBStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "influxdb", {"token": TOKEN})
    error = await raised(InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "`org`" in error.message and TOKEN not in error.message
    assert influxdb.seen == []


@pytest.mark.parametrize(
    ("flux", "detail"),
    [
        ("buckets()", "compilation failed"),
        ('from(bucket: "missing") |> range(start: -1m)', 'could not find bucket "missing"'),
        ('from(bucket: "canary") |> range(start: -1m) |> die()', "die: boom"),
    ],
    ids=["compile", "no-bucket", "runtime"],
)
async def test_rejected_queries_are_invalid(
    influxdb: InfluxDBStandIn, credentials: Path, flux: str, detail: str
) -> None:
    influxdb.buckets["canary"] = [1.0]
    error = await raised(InfluxDBProvider().run_query(metric_query(template_for(influxdb)), flux))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert error.non_retryable
    assert detail in error.message


async def test_a_slow_answer_is_retryable(influxdb: InfluxDBStandIn, credentials: Path) -> None:
    influxdb.buckets["canary"] = [1.0]
    influxdb.delay_seconds = 2.0
    error = await raised(InfluxDBProvider(timeout_seconds=0.3).run_query(metric_query(template_for(influxdb)), FLUX))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable


async def test_nothing_listening_is_retryable(credentials: Path) -> None:
    with InfluxDBStandIn(TOKEN, ORG) as stopped:
        template = template_for(stopped)
    error = await raised(InfluxDBProvider().run_query(metric_query(template), FLUX))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert "Connection refused" in error.message


async def test_a_server_error_is_retryable(influxdb: InfluxDBStandIn, credentials: Path) -> None:
    influxdb.override = ScriptedResponse(status=503, body={"code": "unavailable", "message": "service unavailable"})
    error = await raised(InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert "HTTP 503" in error.message and "service unavailable" in error.message


@pytest.mark.parametrize("body", ["<html>login</html>", "a,b\n1,2\n"], ids=["html", "plain-csv"])
async def test_an_answer_that_is_not_influxdbs_fails_the_query(
    influxdb: InfluxDBStandIn, credentials: Path, body: str
) -> None:
    influxdb.override = ScriptedResponse(status=200, body=body)
    error = await raised(InfluxDBProvider().run_query(metric_query(template_for(influxdb)), FLUX))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "annotated CSV" in error.message


async def test_is_online_counts_an_answer_without_the_default_bucket(
    influxdb: InfluxDBStandIn, credentials: Path
) -> None:
    assert await InfluxDBProvider().is_online(metric_query(template_for(influxdb))) is True
    assert json.loads(influxdb.last.body)["query"] == 'from(bucket: "default") |> range(start: -2h)'


async def test_is_online_with_a_wrong_token_is_an_auth_failure(influxdb: InfluxDBStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "influxdb", {"token": "influx-token-old", "org": ORG})
    error = await raised(InfluxDBProvider().is_online(metric_query(template_for(influxdb))))
    assert error.type == ERR_METRIC_AUTH_FAILED
