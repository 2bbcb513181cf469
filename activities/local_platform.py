"""Registers the local platform's providers: LocalApp workloads, the HAProxy router, Prometheus metrics."""

from __future__ import annotations

from canaryflow.settings import Settings


def register(settings: Settings) -> None:
    from activities.metrics.base import register_builtin_observer, register_metric_provider
    from activities.metrics.builtin_haproxy import haproxy_observer
    from activities.metrics.prometheus import PrometheusProvider
    from activities.routers.base import register_router
    from activities.routers.haproxy import HAProxyRouter
    from activities.workloads.base import register_workload
    from activities.workloads.local import LocalWorkload

    register_workload("local", LocalWorkload(settings.state_dir))
    register_router("haproxy", HAProxyRouter(settings.state_dir))
    register_metric_provider("prometheus", PrometheusProvider())
    register_builtin_observer("haproxy", haproxy_observer(settings.metrics_server))
