"""What a worker registers: every MetricTemplate type, every notifier type, every router's builtins."""

from __future__ import annotations

import importlib

import pytest

from activities.metrics.base import BUILTIN_OBSERVERS, METRIC_PROVIDERS, LazyMetricProvider
from activities.notifiers.base import NOTIFIERS
from activities.platforms import VENDOR_METRIC_PROVIDERS, register_platforms
from canaryflow.settings import Settings
from canaryflow.spec import ALERT_PROVIDER_TYPES, METRIC_PROVIDER_TYPES

CLUSTER_BACKED = {"keptn", "externalmetrics"}  # registered with the Kubernetes platform (they need its client)


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    register_platforms(Settings(kubernetes="off"))


def test_every_metric_template_type_but_the_cluster_backed_ones_is_served_without_a_cluster() -> None:
    assert set(METRIC_PROVIDER_TYPES) - CLUSTER_BACKED <= set(METRIC_PROVIDERS)


@pytest.mark.parametrize("type_name", sorted(VENDOR_METRIC_PROVIDERS))
def test_vendor_providers_load_their_module_on_first_use(type_name: str) -> None:
    provider = METRIC_PROVIDERS[type_name]
    assert isinstance(provider, LazyMetricProvider)
    expected = getattr(importlib.import_module(f"activities.metrics.{type_name}"), VENDOR_METRIC_PROVIDERS[type_name])
    assert isinstance(provider.load(), expected)
    assert provider.load() is provider.load()


def test_every_alert_provider_type_has_a_notifier() -> None:
    import activities.notifiers  # noqa: F401  (registers the notifiers)

    assert set(ALERT_PROVIDER_TYPES) <= set(NOTIFIERS)


def test_builtin_metrics_cover_every_router_we_ship() -> None:
    routers = {"istio", "linkerd", "nginx", "contour", "gloo", "traefik", "kuma", "skipper", "appmesh", "apisix"}
    assert routers | {"osm", "gatewayapi", "kubernetes", "haproxy"} <= set(BUILTIN_OBSERVERS)
