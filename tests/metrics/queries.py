"""Canary, MetricTemplate, MetricQuery and secret builders shared by the provider tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from canaryflow.loader import parse_resource
from canaryflow.spec import Canary, MetricTemplate

NAMESPACE = "shop"


def canary(name: str = "checkout") -> Canary:
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"port": 8080},
            },
        }
    )
    assert isinstance(resource, Canary)
    return resource


def metric_template(provider_type: str, query: str, secret: str | None = None, **provider: Any) -> MetricTemplate:
    settings: dict[str, Any] = {"type": provider_type, **provider}
    if secret is not None:
        settings["secretRef"] = {"name": secret}
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": f"{provider_type}-errors", "namespace": NAMESPACE},
            "spec": {"provider": settings, "query": query},
        }
    )
    assert isinstance(resource, MetricTemplate)
    return resource


def metric_query(template: MetricTemplate, interval: str = "1m", since_change: float | None = None) -> c.MetricQuery:
    return c.MetricQuery(
        target=c.ReleaseTarget(canary=canary()),
        metric_name="error-rate",
        template=template,
        interval=interval,
        since_last_route_change_seconds=since_change,
    )


def write_secret(secrets_dir: Path, name: str, data: dict[str, str]) -> None:
    directory = secrets_dir / NAMESPACE
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")


async def raised(coroutine: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await coroutine
    return caught.value
