"""The Graphite provider (httpx) against a stand-in of graphite-web's render URL API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.contracts import (
    ERR_INVALID_SPEC,
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
)
from activities.metrics.graphite import GraphiteProvider
from canaryflow.spec import MetricTemplate
from tests.helpers.errors import raised
from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.queries import metric_query, metric_template, write_secret
from tests.metrics.standins.graphite import GraphiteStandIn

USERNAME = "flagger"
PASSWORD = "graphite-pass-71c0"
TARGET = "asPercent(sumSeries(stats.checkout.errors.*),sumSeries(stats.checkout.requests.*))"
QUERY = f"""
target={TARGET}
&from=-1min
"""


@pytest.fixture
def graphite() -> Iterator[GraphiteStandIn]:
    with GraphiteStandIn(prefix="/graphite", username=USERNAME, password=PASSWORD) as standin:
        yield standin


@pytest.fixture
def credentials(secrets_dir: Path) -> Path:
    write_secret(secrets_dir, "graphite", {"username": USERNAME, "password": PASSWORD})
    return secrets_dir


def template_for(standin: GraphiteStandIn, secret: str | None = "graphite") -> MetricTemplate:
    return metric_template("graphite", QUERY, secret=secret, address=standin.address)


async def test_returns_the_last_non_null_datapoint(graphite: GraphiteStandIn, credentials: Path) -> None:
    graphite.targets[TARGET] = [10.0, 75.0, "25", 100.0, None]
    assert await GraphiteProvider().run_query(metric_query(template_for(graphite)), QUERY) == 100.0
    request = graphite.last
    assert request.path == "/graphite/render"
    assert request.params == {"target": [TARGET], "from": ["-1min"], "format": ["json"]}


async def test_the_last_target_wins(graphite: GraphiteStandIn, credentials: Path) -> None:
    graphite.targets["a.count"] = [1.0, 2.0]
    graphite.targets["b.count"] = [3.0, None]
    query = "target=a.count&target=b.count&from=-5min&format=png"
    assert await GraphiteProvider().run_query(metric_query(template_for(graphite)), query) == 3.0
    assert graphite.last.params["target"] == ["a.count", "b.count"]
    assert graphite.last.params["format"] == ["json"]


@pytest.mark.parametrize("values", [None, [None, None]], ids=["no-match", "all-null"])
async def test_no_values(graphite: GraphiteStandIn, credentials: Path, values: list[float | None] | None) -> None:
    if values is not None:
        graphite.targets[TARGET] = list(values)
    assert await GraphiteProvider().run_query(metric_query(template_for(graphite)), QUERY) is None


async def test_without_secret_ref_no_credentials_are_sent(credentials: Path) -> None:
    with GraphiteStandIn() as open_graphite:
        open_graphite.targets["a.count"] = [4.0]
        template = template_for(open_graphite, secret=None)
        assert await GraphiteProvider().run_query(metric_query(template), "target=a.count") == 4.0
        assert open_graphite.last.header("Authorization") is None


async def test_wrong_credentials_are_an_auth_failure(graphite: GraphiteStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "graphite", {"username": USERNAME, "password": "stale-password"})
    error = await raised(GraphiteProvider().run_query(metric_query(template_for(graphite)), QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "HTTP 401" in error.message and "shop/graphite" in error.message and "`password`" in error.message
    assert "stale-password" not in error.message


async def test_a_secret_without_password_is_an_auth_failure(graphite: GraphiteStandIn, secrets_dir: Path) -> None:
    write_secret(secrets_dir, "graphite", {"username": USERNAME})
    error = await raised(GraphiteProvider().run_query(metric_query(template_for(graphite)), QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "`password`" in error.message
    assert graphite.seen == []


async def test_an_unparsable_target_is_an_invalid_query(graphite: GraphiteStandIn, credentials: Path) -> None:
    error = await raised(GraphiteProvider().run_query(metric_query(template_for(graphite)), "target=sumSeries(a.*"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "unbalanced parentheses" in error.message


async def test_a_query_without_target_is_invalid(graphite: GraphiteStandIn, credentials: Path) -> None:
    error = await raised(GraphiteProvider().run_query(metric_query(template_for(graphite)), "sumSeries(a.*)"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "target=" in error.message


async def test_the_address_is_required(credentials: Path) -> None:
    template = metric_template("graphite", QUERY)
    error = await raised(GraphiteProvider().run_query(metric_query(template), QUERY))
    assert error.type == ERR_INVALID_SPEC
    assert "provider.address" in error.message


async def test_a_slow_answer_is_retryable(graphite: GraphiteStandIn, credentials: Path) -> None:
    graphite.delay_seconds = 2.0
    error = await raised(GraphiteProvider(timeout_seconds=0.3).run_query(metric_query(template_for(graphite)), QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable


async def test_a_server_error_is_retryable(graphite: GraphiteStandIn, credentials: Path) -> None:
    graphite.override = ScriptedResponse(status=502, body="Bad Gateway")
    error = await raised(GraphiteProvider().run_query(metric_query(template_for(graphite)), QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert "HTTP 502" in error.message


@pytest.mark.parametrize(
    "body",
    ["[", {"target": "x"}, [{"target": "x", "datapoints": [[1.0]]}], [{"target": "x", "datapoints": [["n/a", 1]]}]],
    ids=["truncated", "object", "short-point", "text-value"],
)
async def test_an_answer_that_is_not_graphites_fails_the_query(
    graphite: GraphiteStandIn, credentials: Path, body: Any
) -> None:
    graphite.override = ScriptedResponse(status=200, body=body)
    error = await raised(GraphiteProvider().run_query(metric_query(template_for(graphite)), QUERY))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "render API" in error.message


async def test_is_online_renders_a_test_target(graphite: GraphiteStandIn, credentials: Path) -> None:
    assert await GraphiteProvider().is_online(metric_query(template_for(graphite))) is True
    assert graphite.last.params == {"target": ["test"], "format": ["json"]}


async def test_is_online_fails_on_a_server_error(graphite: GraphiteStandIn, credentials: Path) -> None:
    graphite.override = ScriptedResponse(status=500, body="error")
    error = await raised(GraphiteProvider().is_online(metric_query(template_for(graphite))))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
