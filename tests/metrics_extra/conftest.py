"""Helpers for the metric provider and builtin query tests: canaries, MetricTemplates, queries, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.secrets import SECRETS_DIR_ENV
from canaryflow.loader import parse_resource
from canaryflow.spec import Canary, MetricTemplate

NAMESPACE = "shop"


def make_canary(
    provider: str = "istio",
    *,
    name: str = "podinfo",
    namespace: str = NAMESPACE,
    target: str = "podinfo",
    **spec: Any,
) -> Canary:
    body: dict[str, Any] = {
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "service": {"port": 9898},
    } | spec
    resource = parse_resource(
        {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name, "namespace": namespace}}
        | {"spec": body}
    )
    assert isinstance(resource, Canary)
    return resource


def make_template(type_name: str, query: str, *, secret: str | None = None, **provider: Any) -> MetricTemplate:
    settings: dict[str, Any] = {"type": type_name, **provider}
    if secret is not None:
        settings["secretRef"] = {"name": secret}
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": f"{type_name}-check", "namespace": NAMESPACE},
            "spec": {"provider": settings, "query": query},
        }
    )
    assert isinstance(resource, MetricTemplate)
    return resource


def metric_query(
    template: MetricTemplate | None = None,
    *,
    canary: Canary | None = None,
    metric: str = "request-success-rate",
    interval: str = "1m",
) -> c.MetricQuery:
    return c.MetricQuery(
        target=c.ReleaseTarget(canary=canary or make_canary()),
        metric_name=metric,
        template=template,
        interval=interval,
    )


async def raised(coroutine: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await coroutine
    return caught.value


class SecretStore:
    """Writes secrets where `activities.secrets.read_secret` finds them: `<dir>/<namespace>/<name>.yaml`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, data: dict[str, str], namespace: str = NAMESPACE) -> None:
        directory = self.root / namespace
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretStore]:
    root = tmp_path / "secrets"
    root.mkdir()
    monkeypatch.setenv(SECRETS_DIR_ENV, str(root))
    yield SecretStore(root)
