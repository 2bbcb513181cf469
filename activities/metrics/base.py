"""The metric provider interface (Flagger's providers.Interface) and its registry, keyed by template type."""

from __future__ import annotations

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


METRIC_PROVIDERS: dict[str, MetricProvider] = {}
BUILTIN_OBSERVERS: dict[str, BuiltinMetrics] = {}


def register_metric_provider(type_name: str, provider: MetricProvider) -> None:
    METRIC_PROVIDERS[type_name] = provider


def register_builtin_observer(router: str, observer: BuiltinMetrics) -> None:
    BUILTIN_OBSERVERS[router] = observer
