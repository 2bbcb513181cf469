"""The external metrics provider against an external.metrics.k8s.io stand-in, through the kubernetes ApiClient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
    MetricQuery,
)
from activities.metrics.externalmetrics import ExternalMetricsProvider, parse_external_metrics_query
from tests.helpers.errors import raised
from tests.metrics.queries import metric_query, metric_template
from tests.metrics_extra.conftest import SecretStore
from tests.metrics_extra.standins.kube_api import WORKER_TOKEN, KubeApiStandIn, api_client, external_metric
from tests.metrics_extra.standins.server import serving

QUERY = "shop/http_errors_ratio?labelSelector=app%3Dpodinfo%2Ctrack%3Dcanary"


@pytest.fixture
async def kube_api() -> AsyncIterator[tuple[KubeApiStandIn, str]]:
    stand_in = KubeApiStandIn(
        WORKER_TOKEN,
        metrics={
            ("shop", "http_errors_ratio"): [
                external_metric("http_errors_ratio", "35m", app="podinfo", track="primary"),
                external_metric("http_errors_ratio", "1500m", app="podinfo", track="canary"),
            ]
        },
    )
    async with serving(stand_in.app()) as url:
        yield stand_in, url


def _query(**provider: Any) -> MetricQuery:
    return metric_query(metric_template("externalmetrics", QUERY, **provider))


async def test_returns_the_first_matching_items_quantity(kube_api: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = kube_api
    assert await ExternalMetricsProvider(api_client(url)).run_query(_query(), QUERY) == 1.5
    assert stand_in.selectors[-1] == "app=podinfo,track=canary"


async def test_no_items_is_no_values(kube_api: tuple[KubeApiStandIn, str]) -> None:
    _, url = kube_api
    query = "shop/http_errors_ratio?labelSelector=track%3Dbaseline"
    assert await ExternalMetricsProvider(api_client(url)).run_query(_query(), query) is None


async def test_the_templates_address_and_token_replace_the_workers(
    kube_api: tuple[KubeApiStandIn, str], secrets: SecretStore
) -> None:
    stand_in, url = kube_api
    stand_in.token = "adapter-token"
    secrets.put("adapter", {"token": "adapter-token"})
    worker = api_client("http://127.0.0.1:9", "worker-token")  # a port nothing listens on
    provider = ExternalMetricsProvider(worker)
    assert await provider.run_query(_query(address=url, secretRef={"name": "adapter"}), QUERY) == 1.5
    assert worker.configuration.host == "http://127.0.0.1:9"  # the worker's client is left as it was


async def test_a_refused_token_is_an_auth_failure(kube_api: tuple[KubeApiStandIn, str]) -> None:
    _, url = kube_api
    error = await raised(ExternalMetricsProvider(api_client(url, "stale")).run_query(_query(), QUERY))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "MetricTemplate shop/externalmetrics-errors" in str(error)
    assert "stale" not in str(error)


async def test_an_unknown_metric_names_the_metric(kube_api: tuple[KubeApiStandIn, str]) -> None:
    _, url = kube_api
    error = await raised(ExternalMetricsProvider(api_client(url)).run_query(_query(), "shop/nope"))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "shop/nope" in str(error)


async def test_a_malformed_query_is_invalid(kube_api: tuple[KubeApiStandIn, str]) -> None:
    _, url = kube_api
    error = await raised(ExternalMetricsProvider(api_client(url)).run_query(_query(), "a/b/c"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "<namespace>/<metricName>" in str(error)


async def test_a_slow_api_is_retryable(kube_api: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = kube_api
    stand_in.delay_seconds = 1.0
    error = await raised(ExternalMetricsProvider(api_client(url), timeout_seconds=0.2).run_query(_query(), QUERY))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable


async def test_an_answer_that_is_not_the_api_is_a_failed_query(kube_api: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = kube_api
    stand_in.malformed = True
    error = await raised(ExternalMetricsProvider(api_client(url)).run_query(_query(), QUERY))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "spec.provider.address" in str(error)


async def test_is_online_lists_a_dummy_metric(kube_api: tuple[KubeApiStandIn, str]) -> None:
    stand_in, url = kube_api
    stand_in.metrics[("kube-system", "dummy-metric")] = []
    assert await ExternalMetricsProvider(api_client(url)).is_online(_query()) is True


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("shop/errors?labelSelector=app%3Dweb", ("shop", "errors", "app=web")),
        ("errors", ("default", "errors", None)),
        ("/errors", ("default", "errors", None)),
        ("team-a/errors?labelSelector=", ("team-a", "errors", None)),
    ],
)
def test_query_format_matches_flaggers(query: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_external_metrics_query(query) == expected


@pytest.mark.parametrize("query", ["a/b/c", "shop/", ""])
def test_query_format_rejects_what_flagger_rejects(query: str) -> None:
    with pytest.raises(ValueError):
        parse_external_metrics_query(query)
