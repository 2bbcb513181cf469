"""The providers behind the `metrics.query` activity: template variables rendered, values and errors returned."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import dispatch
from activities.contracts import ERR_INVALID_SPEC, ERR_METRIC_AUTH_FAILED, MetricValue
from activities.metrics.base import METRIC_PROVIDERS
from activities.metrics.newrelic import NewRelicProvider
from tests.metrics.queries import metric_query, metric_template, write_secret
from tests.metrics.standins.newrelic import NewRelicStandIn

SELECT_ERRORS = "SELECT percentage(count(*), WHERE error IS true) AS result FROM Transaction"
TEMPLATE_QUERY = f"{SELECT_ERRORS} WHERE appName = '{{{{ target }}}}.{{{{ namespace }}}}'"
RENDERED = f"{SELECT_ERRORS} WHERE appName = 'checkout.shop'"


@pytest.fixture(autouse=True)
def newrelic_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METRIC_PROVIDERS, "newrelic", NewRelicProvider())


async def test_the_activity_renders_the_template_and_returns_the_value(secrets_dir: Path) -> None:
    write_secret(secrets_dir, "newrelic", {"newrelic_account_id": "42", "newrelic_query_key": "NRIQ-dispatch-1"})
    with NewRelicStandIn("42", "NRIQ-dispatch-1") as newrelic:
        newrelic.rows[RENDERED] = [{"result": 2.5}]
        query = metric_query(metric_template("newrelic", TEMPLATE_QUERY, secret="newrelic", address=newrelic.url))
        value = await ActivityEnvironment().run(dispatch.metric_query, query)
    assert value == MetricValue(value=2.5, query=RENDERED)
    assert newrelic.statements == [RENDERED]


async def test_the_activity_raises_the_providers_typed_error(secrets_dir: Path) -> None:
    write_secret(secrets_dir, "newrelic", {"newrelic_account_id": "42", "newrelic_query_key": "NRIQ-stale"})
    with NewRelicStandIn("42", "NRIQ-current") as newrelic:
        query = metric_query(metric_template("newrelic", TEMPLATE_QUERY, secret="newrelic", address=newrelic.url))
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(dispatch.metric_query, query)
    assert caught.value.type == ERR_METRIC_AUTH_FAILED
    assert caught.value.non_retryable


async def test_an_unknown_template_variable_is_an_invalid_spec(secrets_dir: Path) -> None:
    query = metric_query(metric_template("newrelic", "SELECT 1 FROM {{ variables.table }}", secret="newrelic"))
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(dispatch.metric_query, query)
    assert caught.value.type == ERR_INVALID_SPEC
