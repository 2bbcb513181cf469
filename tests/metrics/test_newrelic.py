"""The New Relic provider (httpx) against a stand-in of the Insights query API."""

from __future__ import annotations

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
from activities.metrics.newrelic import NewRelicProvider
from canaryflow.spec import MetricTemplate
from tests.helpers.errors import raised
from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.queries import metric_query, metric_template, write_secret
from tests.metrics.standins.newrelic import NewRelicStandIn

ACCOUNT_ID = "5131207"
QUERY_KEY = "NRIQ-9f2c41d7e0"
NRQL = (
    "SELECT filter(sum(nginx_ingress_controller_requests), WHERE status >= '500') / "
    "sum(nginx_ingress_controller_requests) * 100 FROM Metric WHERE ingress = 'checkout'"
)


@pytest.fixture
def newrelic() -> Iterator[NewRelicStandIn]:
    with NewRelicStandIn(ACCOUNT_ID, QUERY_KEY) as standin:
        yield standin


@pytest.fixture
def credentials(secrets_dir: Path) -> Path:
    write_secret(secrets_dir, "newrelic", {"newrelic_account_id": ACCOUNT_ID, "newrelic_query_key": QUERY_KEY})
    return secrets_dir


def template_for(standin: NewRelicStandIn, secret: str | None = "newrelic") -> MetricTemplate:
    return metric_template("newrelic", NRQL, secret=secret, address=standin.url)


@pytest.mark.parametrize(("interval", "since"), [("1m", 60), ("30s", 30), ("1m30s", 90), ("2m", 120)])
async def test_runs_nrql_since_the_metric_interval(
    newrelic: NewRelicStandIn, credentials: Path, interval: str, since: int
) -> None:
    newrelic.rows[NRQL] = [{"result": 1.25}]
    value = await NewRelicProvider().run_query(metric_query(template_for(newrelic), interval=interval), f"{NRQL}\n")
    assert value == 1.25
    assert newrelic.since_seconds == [since]
    assert newrelic.statements == [NRQL]
    assert newrelic.last.header("X-Query-Key") == QUERY_KEY
    assert newrelic.last.header("Accept") == "application/json"


@pytest.mark.parametrize(("since_change", "since"), [(17.6, 17), (0.4, 2), (75.0, 60), (None, 60)])
async def test_the_window_shrinks_to_the_last_route_change(
    newrelic: NewRelicStandIn, credentials: Path, since_change: float | None, since: int
) -> None:
    newrelic.rows[NRQL] = [{"result": 0.0}]
    query = metric_query(template_for(newrelic), interval="1m", since_change=since_change)
    assert await NewRelicProvider().run_query(query, NRQL) == 0.0
    assert newrelic.since_seconds == [since]


async def test_a_single_named_aggregate_is_read(newrelic: NewRelicStandIn, credentials: Path) -> None:
    newrelic.rows["SELECT average(duration) FROM Transaction"] = [{"average": 0.042}]
    query = metric_query(template_for(newrelic))
    assert await NewRelicProvider().run_query(query, "SELECT average(duration) FROM Transaction") == 0.042


@pytest.mark.parametrize(
    "rows", [[], [{"result": None}], [{"result": 1.0}, {"result": 2.0}]], ids=["no-rows", "null", "two-rows"]
)
async def test_no_values(newrelic: NewRelicStandIn, credentials: Path, rows: list[dict[str, Any]]) -> None:
    newrelic.rows[NRQL] = rows
    assert await NewRelicProvider().run_query(metric_query(template_for(newrelic)), NRQL) is None


async def test_several_fields_in_the_row_are_an_invalid_query(newrelic: NewRelicStandIn, credentials: Path) -> None:
    newrelic.rows["SELECT count(*), average(duration) FROM Transaction"] = [{"count": 3, "average": 0.1}]
    query = metric_query(template_for(newrelic))
    error = await raised(NewRelicProvider().run_query(query, "SELECT count(*), average(duration) FROM Transaction"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "average, count" in error.message


async def test_a_wrong_query_key_is_an_auth_failure(newrelic: NewRelicStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "newrelic", {"newrelic_account_id": ACCOUNT_ID, "newrelic_query_key": "NRIQ-revoked"})
    error = await raised(NewRelicProvider().run_query(metric_query(template_for(newrelic)), NRQL))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "HTTP 401" in error.message and "shop/newrelic" in error.message and "newrelic_query_key" in error.message
    assert "NRIQ-revoked" not in error.message


async def test_a_secret_without_the_account_is_an_auth_failure(newrelic: NewRelicStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "newrelic", {"newrelic_query_key": QUERY_KEY})
    error = await raised(NewRelicProvider().run_query(metric_query(template_for(newrelic)), NRQL))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "`newrelic_account_id`" in error.message and QUERY_KEY not in error.message
    assert newrelic.seen == []


async def test_nrql_syntax_errors_are_invalid_queries(newrelic: NewRelicStandIn, credentials: Path) -> None:
    error = await raised(NewRelicProvider().run_query(metric_query(template_for(newrelic)), "SELEKT 1"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "NRQL Syntax Error" in error.message


async def test_a_slow_answer_is_retryable(newrelic: NewRelicStandIn, credentials: Path) -> None:
    newrelic.delay_seconds = 2.0
    error = await raised(NewRelicProvider(timeout_seconds=0.3).run_query(metric_query(template_for(newrelic)), NRQL))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable


async def test_nothing_listening_is_retryable(credentials: Path) -> None:
    with NewRelicStandIn(ACCOUNT_ID, QUERY_KEY) as stopped:
        template = template_for(stopped)
    error = await raised(NewRelicProvider().run_query(metric_query(template), NRQL))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert "Connection refused" in error.message


@pytest.mark.parametrize("body", ["<html>proxy</html>", {"rows": []}], ids=["html", "no-results"])
async def test_an_answer_that_is_not_new_relics_fails_the_query(
    newrelic: NewRelicStandIn, credentials: Path, body: Any
) -> None:
    newrelic.override = ScriptedResponse(status=200, body=body)
    error = await raised(NewRelicProvider().run_query(metric_query(template_for(newrelic)), NRQL))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "Insights API" in error.message


async def test_is_online_runs_a_metric_query(newrelic: NewRelicStandIn, credentials: Path) -> None:
    assert await NewRelicProvider().is_online(metric_query(template_for(newrelic))) is True
    assert newrelic.statements == ["SELECT * FROM Metric"]
    assert newrelic.since_seconds == [60]


async def test_is_online_with_a_wrong_key_is_an_auth_failure(newrelic: NewRelicStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "newrelic", {"newrelic_account_id": ACCOUNT_ID, "newrelic_query_key": "NRIQ-old"})
    error = await raised(NewRelicProvider().is_online(metric_query(template_for(newrelic))))
    assert error.type == ERR_METRIC_AUTH_FAILED
