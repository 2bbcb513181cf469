"""No error message of any provider carries a secret value, even when a server echoes the request back."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from activities.metrics.cloudwatch import CloudWatchProvider
from activities.metrics.datadog import DatadogProvider
from activities.metrics.graphite import GraphiteProvider
from activities.metrics.influxdb import InfluxDBProvider
from activities.metrics.newrelic import NewRelicProvider
from tests.helpers.http_receiver import HttpReceiver, RecordedRequest, ScriptedResponse
from tests.metrics.queries import metric_query, metric_template, write_secret

SECRETS: dict[str, dict[str, str]] = {
    "datadog": {"datadog_api_key": "dd-api-31f9a0c2", "datadog_application_key": "dd-app-77e1b4d9"},
    "newrelic": {"newrelic_account_id": "8812736", "newrelic_query_key": "NRIQ-c0ffee-5e11"},
    "graphite": {"username": "graphite-reader", "password": "gr-pass-4b8e2f"},
    "influxdb": {"token": "influx-tok-a1b2c3d4e5", "org": "shop-org-9"},
}
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAHYGIENE1234567", "AWS_SECRET_ACCESS_KEY": "aws-secret-hygiene-0f9e8d"}
PROVIDERS: dict[str, Any] = {
    "datadog": DatadogProvider,
    "newrelic": NewRelicProvider,
    "graphite": GraphiteProvider,
    "influxdb": InfluxDBProvider,
    "cloudwatch": CloudWatchProvider,
}
QUERIES = {
    "datadog": "avg:errors{*}",
    "newrelic": "SELECT count(*) FROM Transaction",
    "graphite": "target=errors.count",
    "influxdb": 'from(bucket: "b") |> range(start: -1m)',
    "cloudwatch": '[{"Id": "m1", "Expression": "SUM(METRICS())"}]',
}


def secret_values() -> list[str]:
    values = [value for secret in SECRETS.values() for value in secret.values()] + list(AWS_KEYS.values())
    graphite = SECRETS["graphite"]
    values.append(base64.b64encode(f"{graphite['username']}:{graphite['password']}".encode()).decode())
    return values


class Echo:
    """Answers every request with `status` and a body quoting everything the request carried."""

    def __init__(self, status: int) -> None:
        self.status = status

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        quoted = {"path": request.path, "headers": request.headers, "body": request.body.decode(errors="replace")}
        text = json.dumps(quoted)
        body: dict[str, Any] = {"errors": [text], "error": text, "message": text, "code": "echo"}
        return ScriptedResponse(status=self.status, body=body)


@pytest.fixture
def credentials(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, data in SECRETS.items():
        write_secret(secrets_dir, name, data)
    for name, value in AWS_KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture
def echo() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


def assert_no_secret(error: ApplicationError) -> None:
    """Neither the message nor the failure Temporal records (message, details, causes, stack trace) shows one."""
    failure = Failure()
    converter = DataConverter.default
    converter.failure_converter.to_failure(error, converter.payload_converter, failure)
    recorded = str(failure)
    assert failure.message == error.message
    for value in secret_values():
        assert value not in error.message, f"{error.type} message shows a secret value"
        assert value not in recorded, f"{error.type} failure shows a secret value"


@pytest.mark.parametrize("provider_type", sorted(PROVIDERS))
@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500])
async def test_echoed_requests_never_reach_the_messages(
    echo: HttpReceiver, credentials: None, provider_type: str, status: int
) -> None:
    echo.handler = Echo(status)
    secret = None if provider_type == "cloudwatch" else provider_type
    extra = {"region": "eu-west-1"} if provider_type == "cloudwatch" else {}
    template = metric_template(provider_type, QUERIES[provider_type], secret=secret, address=echo.url, **extra)
    provider = PROVIDERS[provider_type]()
    with pytest.raises(ApplicationError) as caught:
        await provider.run_query(metric_query(template), QUERIES[provider_type])
    assert echo.requests, "the provider never reached the server"
    assert_no_secret(caught.value)


@pytest.mark.parametrize("provider_type", sorted(set(SECRETS)))
async def test_incomplete_secrets_are_named_not_shown(
    echo: HttpReceiver, secrets_dir: Path, provider_type: str
) -> None:
    present = dict(list(SECRETS[provider_type].items())[:1])  # the first key only
    write_secret(secrets_dir, provider_type, present)
    template = metric_template(provider_type, QUERIES[provider_type], secret=provider_type, address=echo.url)
    with pytest.raises(ApplicationError) as caught:
        await PROVIDERS[provider_type]().run_query(metric_query(template), QUERIES[provider_type])
    assert f"shop/{provider_type}" in caught.value.message
    assert_no_secret(caught.value)
