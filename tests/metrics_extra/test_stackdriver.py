"""The Stackdriver provider through google-cloud-monitoring's gRPC client, against a QueryService stand-in.

Credentials are real: a service-account key (made in the test) whose token_uri is a stand-in token endpoint that
checks the signed assertion; the access token it grants is what the Monitoring stand-in accepts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from activities.contracts import (
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
    MetricQuery,
)
from activities.metrics.stackdriver import MONITORING_READ_SCOPE, StackdriverProvider
from tests.helpers.errors import raised
from tests.metrics.queries import metric_query, metric_template
from tests.metrics_extra.conftest import SecretStore
from tests.metrics_extra.standins.cloud_monitoring import MonitoringStandIn, TokenEndpoint, series
from tests.metrics_extra.standins.server import serving

PROJECT = "shop-prod"
ACCESS_TOKEN = "ya29.stand-in-access-token"
ERROR_RATIO = (
    "fetch k8s_container | metric 'istio.io/service/server/request_count' | within 5m "
    "| filter metric.response_code >= 500 | ratio"
)


@dataclass
class Google:
    monitoring: MonitoringStandIn
    tokens: TokenEndpoint
    secrets: SecretStore

    def grant(self, project: str = PROJECT) -> None:
        self.secrets.put("gcp", {"project": project, "serviceAccountKey": self.tokens.service_account_key(project)})

    def query(self) -> MetricQuery:
        template = metric_template("stackdriver", ERROR_RATIO, secret="gcp", address=self.monitoring.address)
        return metric_query(template)


@pytest.fixture(scope="module")
def monitoring() -> Iterator[MonitoringStandIn]:
    with MonitoringStandIn(ACCESS_TOKEN, PROJECT) as stand_in:
        yield stand_in


@pytest.fixture
async def google(monitoring: MonitoringStandIn, secrets: SecretStore) -> AsyncIterator[Google]:
    monitoring.results = {ERROR_RATIO: [series({"double_value": 0.042}, {"double_value": 0.9})]}
    monitoring.delay_seconds, monitoring.garbage = 0.0, False
    tokens = TokenEndpoint(ACCESS_TOKEN)
    async with serving(tokens.app()) as url:
        tokens.url = url
        yield Google(monitoring, tokens, secrets)


async def test_returns_the_first_value_of_the_first_series(google: Google) -> None:
    google.grant()
    assert await StackdriverProvider().run_query(google.query(), ERROR_RATIO) == 0.042
    assert google.monitoring.requests[-1] == (f"projects/{PROJECT}", ERROR_RATIO)
    [grant] = google.tokens.grants
    assert grant["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert grant["iss"] == google.tokens.client_email
    assert grant["scope"] == MONITORING_READ_SCOPE


async def test_an_int64_value_is_a_number_too(google: Google) -> None:
    google.monitoring.results[ERROR_RATIO] = [series({"int64_value": 7})]
    google.grant()
    assert await StackdriverProvider().run_query(google.query(), ERROR_RATIO) == 7.0


async def test_application_default_credentials_serve_when_the_secret_has_no_key(
    google: Google, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "adc.json"
    key_file.write_text(google.tokens.service_account_key(PROJECT), encoding="utf-8")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    google.secrets.put("gcp", {"project": PROJECT})
    assert await StackdriverProvider().run_query(google.query(), ERROR_RATIO) == 0.042


@pytest.mark.parametrize("data", [[], [series()]], ids=["no-series", "no-points"])
async def test_no_data_is_no_values(google: Google, data: list[dict[str, object]]) -> None:
    google.monitoring.results[ERROR_RATIO] = data
    google.grant()
    assert await StackdriverProvider().run_query(google.query(), ERROR_RATIO) is None


async def test_a_project_the_account_cannot_read_is_an_auth_failure(google: Google) -> None:
    google.grant(project="someone-elses")
    error = await raised(StackdriverProvider().run_query(google.query(), ERROR_RATIO))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert error.non_retryable
    assert "MetricTemplate shop/stackdriver-errors" in str(error)


async def test_a_key_the_token_endpoint_rejects_is_an_auth_failure_without_the_key(google: Google) -> None:
    stranger = TokenEndpoint("other", client_email="intruder@evil.iam.gserviceaccount.com")
    stranger.url = google.tokens.url  # signed by a key the endpoint does not know
    key = stranger.service_account_key(PROJECT)
    google.secrets.put("gcp", {"project": PROJECT, "serviceAccountKey": key})
    error = await raised(StackdriverProvider().run_query(google.query(), ERROR_RATIO))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "PRIVATE KEY" not in str(error)


async def test_a_secret_without_project_names_the_key(google: Google) -> None:
    google.secrets.put("gcp", {"serviceAccountKey": google.tokens.service_account_key(PROJECT)})
    error = await raised(StackdriverProvider().run_query(google.query(), ERROR_RATIO))
    assert error.type == ERR_METRIC_AUTH_FAILED
    assert "`project`" in str(error)


async def test_invalid_mql_is_an_invalid_query(google: Google) -> None:
    google.grant()
    error = await raised(StackdriverProvider().run_query(google.query(), "fetch nothing |"))
    assert error.type == ERR_METRIC_QUERY_INVALID
    assert "Syntax error" in str(error)


async def test_a_slow_api_is_retryable(google: Google) -> None:
    google.monitoring.delay_seconds = 1.0
    google.grant()
    error = await raised(StackdriverProvider(timeout_seconds=0.3).run_query(google.query(), ERROR_RATIO))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE
    assert not error.non_retryable


async def test_a_value_that_is_not_a_number_is_a_failed_query(google: Google) -> None:
    google.monitoring.results[ERROR_RATIO] = [series({"string_value": "n/a"})]
    google.grant()
    error = await raised(StackdriverProvider().run_query(google.query(), ERROR_RATIO))
    assert error.type == ERR_METRIC_QUERY_FAILED
    assert "string_value" in str(error)


async def test_an_answer_that_is_not_a_protobuf_is_retryable(google: Google) -> None:
    google.monitoring.garbage = True  # gRPC reports it as INTERNAL: a broken hop, not a wrong query
    google.grant()
    error = await raised(StackdriverProvider().run_query(google.query(), ERROR_RATIO))
    assert error.type == ERR_METRIC_SERVER_UNAVAILABLE


async def test_is_online_accepts_the_empty_querys_invalid_argument(google: Google) -> None:
    google.grant()
    assert await StackdriverProvider().is_online(google.query()) is True
    assert google.monitoring.requests[-1] == (f"projects/{PROJECT}", "")
    google.grant(project="someone-elses")
    assert (await raised(StackdriverProvider().is_online(google.query()))).type == ERR_METRIC_AUTH_FAILED
