"""The CloudWatch provider through boto3 against moto's CloudWatch server."""

from __future__ import annotations

import json
import uuid
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
from activities.metrics.cloudwatch import CloudWatchProvider
from canaryflow.spec import MetricTemplate
from tests.helpers.errors import raised
from tests.helpers.http_receiver import HttpReceiver, ScriptedResponse
from tests.metrics.queries import metric_query, metric_template
from tests.metrics.standins.cloudwatch import REGION, MotoCloudWatch

ACCESS_KEY = "AKIAEXAMPLE7Q2W3E4R5"
SECRET_KEY = "cw-secret-9d8c7b6a5f4e3d2c1b0a"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoCloudWatch]:
    with MotoCloudWatch() as server:
        yield server


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials only from the environment: no profile files, no instance metadata, no endpoint overrides."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def namespace() -> str:
    return f"Shop/{uuid.uuid4().hex[:8]}"


def dimensions(namespace: str) -> dict[str, str]:
    # Unique per test too: moto matches dimensions without the namespace once dimensions are given.
    return {"app": f"checkout-{namespace}"}


def error_rate_query(namespace: str, **overrides: Any) -> str:
    """Flagger's documented shape: an expression returned, the metric it reads hidden."""
    metric = {
        "Id": "m1",
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": "Errors",
                "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions(namespace).items()],
            },
            "Period": 60,
            "Stat": "Sum",
            "Unit": "Count",
        },
        "ReturnData": False,
    }
    return json.dumps([{"Id": "e1", "Expression": "m1", "Label": "Errors"}, metric | overrides])


def template_for(address: str, query: str = "[]", **provider: Any) -> MetricTemplate:
    settings: dict[str, Any] = {"region": REGION} | provider
    return metric_template("cloudwatch", query, address=address, **settings)


async def test_returns_the_newest_value_of_the_first_result(moto: MotoCloudWatch, namespace: str) -> None:
    moto.put(namespace, "Errors", dimensions(namespace), [(30, 2.0), (90, 3.0), (150, 5.0)])
    query = error_rate_query(namespace)
    assert await CloudWatchProvider().run_query(metric_query(template_for(moto.url, query)), query) == 2.0


@pytest.mark.parametrize(("interval", "expected"), [("30s", None), ("1m", 50.0)])
async def test_the_window_is_ten_intervals_long(
    moto: MotoCloudWatch, namespace: str, interval: str, expected: float | None
) -> None:
    moto.put(namespace, "Errors", dimensions(namespace), [(420, 50.0)])  # inside 10 x 1m, outside 10 x 30s
    query = error_rate_query(namespace)
    provider = CloudWatchProvider()
    assert await provider.run_query(metric_query(template_for(moto.url, query), interval=interval), query) == expected


async def test_the_window_is_not_shrunk_to_the_last_route_change(moto: MotoCloudWatch, namespace: str) -> None:
    moto.put(namespace, "Errors", dimensions(namespace), [(240, 7.0)])
    query = error_rate_query(namespace)
    template = template_for(moto.url, query)
    assert await CloudWatchProvider().run_query(metric_query(template, interval="1m", since_change=10.0), query) == 7.0


async def test_keys_match_case_insensitively_like_flaggers_go_decoding(moto: MotoCloudWatch, namespace: str) -> None:
    moto.put(namespace, "Errors", dimensions(namespace), [(30, 4.0)])
    query = json.dumps(
        [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": namespace,
                        "metricName": "Errors",
                        "dimensions": [{"name": "app", "value": dimensions(namespace)["app"]}],
                    },
                    "period": 60,
                    "stat": "Sum",
                },
            }
        ]
    )
    assert await CloudWatchProvider().run_query(metric_query(template_for(moto.url, query)), query) == 4.0


async def test_no_datapoints_is_no_values(moto: MotoCloudWatch, namespace: str) -> None:
    query = error_rate_query(namespace)
    assert await CloudWatchProvider().run_query(metric_query(template_for(moto.url, query)), query) is None


async def test_refused_credentials_are_an_auth_failure(moto: MotoCloudWatch, namespace: str) -> None:
    query = error_rate_query(namespace)
    moto.require_auth()
    try:
        error = await raised(CloudWatchProvider().run_query(metric_query(template_for(moto.url, query)), query))
    finally:
        moto.allow_any_credentials()
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "HTTP 403" in error.message and "cloudwatch:GetMetricData" in error.message
    assert "MetricTemplate shop/cloudwatch-errors" in error.message
    assert SECRET_KEY not in error.message and ACCESS_KEY not in error.message


async def test_no_credentials_at_all_are_an_auth_failure(
    moto: MotoCloudWatch, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    query = error_rate_query(namespace)
    error = await raised(CloudWatchProvider().run_query(metric_query(template_for(moto.url, query)), query))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "no AWS credentials" in error.message


async def test_the_region_is_required(moto: MotoCloudWatch, namespace: str) -> None:
    query = error_rate_query(namespace)
    template = metric_template("cloudwatch", query, address=moto.url)
    error = await raised(CloudWatchProvider().run_query(metric_query(template), query))
    assert error.type == ERR_INVALID_SPEC
    assert "provider.region" in error.message


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("{not json", "not JSON"),
        ('{"Id": "m1"}', "JSON array"),
        ('[{"Id": "m1", "Metric": {}}]', "unknown field MetricDataQueries[].Metric"),
        ('[{"Id": "m1", "ReturnData": "yes"}]', "does not fit GetMetricData"),
        ('[{"Id": "m1", "Label": "neither a metric nor an expression"}]', "ValidationError"),
    ],
    ids=["not-json", "not-array", "unknown-field", "wrong-type", "rejected-by-cloudwatch"],
)
async def test_queries_cloudwatch_cannot_run_are_invalid(moto: MotoCloudWatch, query: str, detail: str) -> None:
    error = await raised(CloudWatchProvider().run_query(metric_query(template_for(moto.url, query)), query))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert error.non_retryable
    assert detail in error.message


async def test_a_slow_endpoint_is_retryable(namespace: str) -> None:
    query = error_rate_query(namespace)
    with HttpReceiver(default=ScriptedResponse(delay_seconds=2.0)) as slow:
        provider = CloudWatchProvider(timeout_seconds=0.3)
        error = await raised(provider.run_query(metric_query(template_for(slow.url, query)), query))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable


async def test_an_answer_that_is_not_cloudwatchs_fails_the_query(namespace: str) -> None:
    query = error_rate_query(namespace)
    with HttpReceiver(default=ScriptedResponse(status=200, body="<html>captive portal</html>")) as portal:
        error = await raised(CloudWatchProvider().run_query(metric_query(template_for(portal.url, query)), query))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "CloudWatch API" in error.message


async def test_is_online_accepts_the_400_for_an_empty_query(moto: MotoCloudWatch) -> None:
    assert await CloudWatchProvider().is_online(metric_query(template_for(moto.url))) is True


async def test_is_online_with_refused_credentials_is_an_auth_failure(moto: MotoCloudWatch) -> None:
    moto.require_auth()
    try:
        error = await raised(CloudWatchProvider().is_online(metric_query(template_for(moto.url))))
    finally:
        moto.allow_any_credentials()
    assert error.type == ERR_METRIC_AUTH_FAILED
