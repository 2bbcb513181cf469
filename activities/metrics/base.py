"""The metric provider interface (Flagger's providers.Interface) and its registry, keyed by template type."""

from __future__ import annotations

import importlib
from typing import Protocol

from activities.contracts import MetricQuery


class MetricProvider(Protocol):
    """Runs one rendered query. Returns None for "no values" (empty result, NaN)."""

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None: ...

    async def is_online(self, query: MetricQuery) -> bool: ...


class BuiltinMetrics(Protocol):
    """Renders Flagger's builtin `request-success-rate` / `request-duration` queries for one router."""

    def query(self, query: MetricQuery) -> str: ...

    def provider(self, query: MetricQuery) -> MetricProvider: ...


class LazyMetricProvider:
    """A provider whose module (and vendor client library) is imported on first use, not at worker start.

    Worker start time is recovery time after a crash; datadog, influxdb, google-cloud-monitoring and boto3 add
    seconds of imports that only templates of that type need.
    """

    def __init__(self, module: str, class_name: str) -> None:
        self.module, self.class_name = module, class_name
        self._provider: MetricProvider | None = None

    def load(self) -> MetricProvider:
        if self._provider is None:
            provider: MetricProvider = getattr(importlib.import_module(self.module), self.class_name)()
            self._provider = provider
        return self._provider

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        return await self.load().run_query(query, rendered)

    async def is_online(self, query: MetricQuery) -> bool:
        return await self.load().is_online(query)


METRIC_PROVIDERS: dict[str, MetricProvider] = {}
BUILTIN_OBSERVERS: dict[str, BuiltinMetrics] = {}


def register_metric_provider(type_name: str, provider: MetricProvider) -> None:
    METRIC_PROVIDERS[type_name] = provider


def register_builtin_observer(router: str, observer: BuiltinMetrics) -> None:
    BUILTIN_OBSERVERS[router] = observer
