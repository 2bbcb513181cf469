"""The Keptn provider against a stand-in of the metrics.keptn.sh API (with a stand-in Keptn controller)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
    MetricQuery,
)
from activities.metrics.keptn import KeptnProvider, KeptnQuery, parse_keptn_query
from tests.helpers.errors import raised
from tests.metrics.queries import metric_query, metric_template
from tests.metrics_extra.standins.kube_api import WORKER_TOKEN, KubeApiStandIn, api_client, keptn_metric
from tests.metrics_extra.standins.server import serving

METRIC_QUERY = "keptnmetric/shop/podinfo-error-rate"
ANALYSIS_QUERY = "analysis/shop/podinfo-slo/5m/workload=podinfo;track=canary"


@pytest.fixture
async def keptn() -> AsyncIterator[tuple[KubeApiStandIn, str]]:
    stand_in = KubeApiStandIn(
        WORKER_TOKEN, keptn_metrics={("shop", "podinfo-error-rate"): keptn_metric("shop", "podinfo-error-rate", "0.25")}
    )
    async with serving(stand_in.app()) as url:
        yield stand_in, url


def _provider(url: str, token: str = WORKER_TOKEN, timeout: float = 2.0) -> KeptnProvider:
    return KeptnProvider(
        api_client(url, token), poll_interval_seconds=0.02, analysis_timeout_seconds=timeout, request_timeout_seconds=1
    )


def _query(text: str) -> MetricQuery:
    return metric_query(metric_template("keptn", text))


async def test_reads_the_keptn_metrics_value(keptn: tuple[KubeApiStandIn, str]) -> None:
    _, url = keptn
    assert await _provider(url).run_query(_query(METRIC_QUERY), METRIC_QUERY) == 0.25


async def test_a_keptn_metric_without_a_value_yet_has_no_values(keptn: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = keptn
    stand_in.keptn_metrics[("shop", "podinfo-error-rate")] = keptn_metric("shop", "podinfo-error-rate", None)
    assert await _provider(url).run_query(_query(METRIC_QUERY), METRIC_QUERY) is None


async def test_an_analysis_is_created_awaited_and_deleted(keptn: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = keptn
    seen: list[dict[str, object]] = []
    original = stand_in._complete

    def complete(namespace: str, name: str) -> None:
        seen.append(stand_in.analyses[(namespace, name)])
        original(namespace, name)

    stand_in._complete = complete  # type: ignore[method-assign]
    assert await _provider(url).run_query(_query(ANALYSIS_QUERY), ANALYSIS_QUERY) == 1.0
    [analysis] = seen
    assert analysis["spec"] == {
        "analysisDefinition": {"name": "podinfo-slo"},
        "timeframe": {"recent": "5m"},
        "args": {"workload": "podinfo", "track": "canary"},
    }
    assert stand_in.analyses == {}
    assert len(stand_in.deleted_analyses) == 1
    assert stand_in.deleted_analyses[0].startswith("podinfo-slo-")


async def test_a_failed_analysis_is_zero(keptn: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = keptn
    stand_in.analysis_passes = False
    assert await _provider(url).run_query(_query(ANALYSIS_QUERY), ANALYSIS_QUERY) == 0.0


async def test_an_analysis_that_never_completes_times_out_retryably_and_is_deleted(
    keptn: tuple[KubeApiStandIn, str],
) -> None:
    stand_in, url = keptn
    stand_in.analysis_passes = None
    error = await raised(_provider(url, timeout=0.2).run_query(_query(ANALYSIS_QUERY), ANALYSIS_QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable
    assert "podinfo-slo" in str(error)
    assert stand_in.analyses == {}


async def test_a_refused_token_is_an_auth_failure(keptn: tuple[KubeApiStandIn, str]) -> None:
    _, url = keptn
    error = await raised(_provider(url, "stale-token").run_query(_query(METRIC_QUERY), METRIC_QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "MetricTemplate shop/keptn-errors" in str(error)
    assert "stale-token" not in str(error)


async def test_a_missing_keptn_metric_is_named(keptn: tuple[KubeApiStandIn, str]) -> None:
    _, url = keptn
    error = await raised(_provider(url).run_query(_query(METRIC_QUERY), "keptnmetric/shop/nope"))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "KeptnMetric shop/nope" in str(error)


async def test_a_slow_api_is_retryable(keptn: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = keptn
    stand_in.delay_seconds = 1.5
    error = await raised(_provider(url).run_query(_query(METRIC_QUERY), METRIC_QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE


async def test_an_answer_that_is_not_the_api_is_a_failed_query(keptn: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = keptn
    stand_in.malformed = True
    error = await raised(_provider(url).run_query(_query(METRIC_QUERY), METRIC_QUERY))
    assert error.type == ERR_METRIC_QUERY_FAILED


async def test_a_malformed_query_is_invalid(keptn: tuple[KubeApiStandIn, str]) -> None:
    _, url = keptn
    error = await raised(_provider(url).run_query(_query("deployment/shop/x"), "deployment/shop/x"))
    assert error.type == ERR_METRIC_QUERY_INVALID


def test_query_format_matches_flaggers() -> None:
    assert parse_keptn_query("KeptnMetric/Shop/Error-Rate\n") == KeptnQuery("keptnmetrics", "shop", "error-rate")
    assert parse_keptn_query("analyses/shop/slo") == KeptnQuery("analyses", "shop", "slo", "1m", {})
    assert parse_keptn_query("analysis/shop/slo/2m/a=1;broken;b=2") == KeptnQuery(
        "analyses", "shop", "slo", "2m", {"a": "1", "b": "2"}
    )
    with pytest.raises(ValueError):
        parse_keptn_query("keptnmetric/shop")
