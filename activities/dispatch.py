"""The workload, router and metric activities: each looks up the provider for the canary and calls it.

The workflow only knows activity names (activities/contracts.py); which platform or router serves a canary is
decided here, from the spec, through one registry per capability (like Flagger's router factory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.metrics.base import BUILTIN_OBSERVERS, METRIC_PROVIDERS, MetricProvider
from activities.metrics.prometheus import windowed
from activities.metrics.render import TemplateError, render_query
from activities.routers.base import ROUTERS, Router, router_key
from activities.workloads.base import WORKLOADS, WorkloadProvider, platform_of


def _unknown(kind: str, name: str, known: list[str]) -> ApplicationError:
    registered = ", ".join(sorted(known)) or "none"
    return ApplicationError(
        f"no {kind} registered for {name!r} in this worker (registered: {registered})",
        type=c.ERR_PROVIDER_UNKNOWN,
        non_retryable=True,
    )


def workload_for(target: c.ReleaseTarget) -> WorkloadProvider:
    platform = platform_of(target)
    if platform not in WORKLOADS:
        raise _unknown("workload platform", platform, list(WORKLOADS))
    return WORKLOADS[platform]


def router_for(target: c.ReleaseTarget) -> Router:
    key = router_key(target.canary.spec.provider)
    if key not in ROUTERS:
        raise _unknown("router", key, list(ROUTERS))
    return ROUTERS[key]


@activity.defn(name=c.ACT_WORKLOAD_INITIALIZE)
async def workload_initialize(target: c.ReleaseTarget) -> c.InitializeResult | None:
    return await workload_for(target).initialize(target)


@activity.defn(name=c.ACT_WORKLOAD_CHECK_READY)
async def workload_check_ready(check: c.ReadinessCheck) -> None:
    await workload_for(check.target).check_ready(check)


@activity.defn(name=c.ACT_WORKLOAD_SCALE_FROM_ZERO)
async def workload_scale_from_zero(target: c.ReleaseTarget) -> None:
    await workload_for(target).scale_from_zero(target)


@activity.defn(name=c.ACT_WORKLOAD_SCALE_TO_ZERO)
async def workload_scale_to_zero(target: c.ReleaseTarget) -> None:
    await workload_for(target).scale_to_zero(target)


@activity.defn(name=c.ACT_WORKLOAD_PROMOTE)
async def workload_promote(target: c.ReleaseTarget) -> None:
    await workload_for(target).promote(target)


@activity.defn(name=c.ACT_ROUTER_RECONCILE)
async def router_reconcile(target: c.ReleaseTarget) -> None:
    await router_for(target).reconcile(target)


@activity.defn(name=c.ACT_ROUTER_SET_ROUTES)
async def router_set_routes(request: c.SetRoutes) -> None:
    await router_for(request.target).set_routes(request)


@activity.defn(name=c.ACT_ROUTER_GET_ROUTES)
async def router_get_routes(target: c.ReleaseTarget) -> c.Routes:
    return await router_for(target).get_routes(target)


def _metric_source(query: c.MetricQuery) -> tuple[MetricProvider, str]:
    if query.template is not None:
        type_name = query.template.spec.provider.type
        if type_name not in METRIC_PROVIDERS:
            raise _unknown("metric provider", type_name, list(METRIC_PROVIDERS))
        try:
            # Prometheus windows ({{ interval }}) shrink so they never span the previous traffic step.
            model = windowed(query) if type_name == "prometheus" else query
            rendered = render_query(query.template.spec.query, model)
        except TemplateError as error:
            raise ApplicationError(str(error), type=c.ERR_INVALID_SPEC, non_retryable=True) from error
        return METRIC_PROVIDERS[type_name], rendered
    key = router_key(query.target.canary.spec.provider)
    if key not in BUILTIN_OBSERVERS:
        raise _unknown("builtin metrics observer", key, list(BUILTIN_OBSERVERS))
    observer = BUILTIN_OBSERVERS[key]
    if query.inline_query:
        # Flagger's deprecated inline query runs as-is on the Prometheus the builtin metrics use.
        try:
            rendered = render_query(query.inline_query, windowed(query))
        except TemplateError as error:
            raise ApplicationError(str(error), type=c.ERR_INVALID_SPEC, non_retryable=True) from error
        return observer.provider(query), rendered
    return observer.provider(query), observer.query(query)


@activity.defn(name=c.ACT_METRIC_QUERY)
async def metric_query(query: c.MetricQuery) -> c.MetricValue:
    provider, rendered = _metric_source(query)
    value = await provider.run_query(query, rendered)
    return c.MetricValue(value=value, query=rendered)


DISPATCH_ACTIVITIES: list[Callable[..., Any]] = [
    workload_initialize,
    workload_check_ready,
    workload_scale_from_zero,
    workload_scale_to_zero,
    workload_promote,
    router_reconcile,
    router_set_routes,
    router_get_routes,
    metric_query,
]
