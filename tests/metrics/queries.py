"""Canary, MetricTemplate, MetricQuery and secret builders shared by the provider tests of both metric suites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from activities import contracts as c
from canaryflow.loader import parse_resource
from canaryflow.spec import Canary, MetricTemplate

NAMESPACE = "shop"


def make_canary(
    provider: str | None = None,
    *,
    name: str = "checkout",
    namespace: str = NAMESPACE,
    port: int = 8080,
    **spec: Any,
) -> Canary:
    """A Canary of the Deployment `name`; `spec` adds or replaces spec fields (camelCase, as in YAML)."""
    body: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "service": {"port": port},
    }
    if provider is not None:
        body["provider"] = provider
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": namespace},
            "spec": body | spec,
        }
    )
    assert isinstance(resource, Canary)
    return resource


def metric_template(provider_type: str, query: str, secret: str | None = None, **provider: Any) -> MetricTemplate:
    """MetricTemplate `shop/<provider_type>-errors`; `provider` adds spec.provider fields (address=...)."""
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


def metric_query(
    template: MetricTemplate | None = None,
    *,
    canary: Canary | None = None,
    metric: str = "error-rate",
    interval: str = "1m",
    since_change: float | None = None,
) -> c.MetricQuery:
    return c.MetricQuery(
        target=c.ReleaseTarget(canary=canary or make_canary()),
        metric_name=metric,
        template=template,
        interval=interval,
        since_last_route_change_seconds=since_change,
    )


def write_secret(secrets_dir: Path, name: str, data: dict[str, str]) -> None:
    directory = secrets_dir / NAMESPACE
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
