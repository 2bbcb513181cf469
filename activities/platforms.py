"""Registers every provider a worker serves: the local platform always, Kubernetes when a cluster is configured,
every MetricTemplate provider, the builtin metrics of every router, and the status sinks (one table each)."""

from __future__ import annotations

import logging

from canaryflow.settings import Settings

log = logging.getLogger(__name__)


def kubernetes_enabled(settings: Settings) -> bool:
    from activities.kube.detect import kube_configured

    if settings.kubernetes == "auto":
        return kube_configured(settings)
    return settings.kubernetes == "on"


def register_platforms(settings: Settings) -> None:
    from activities.local_platform import register as register_local
    from activities.status.metrics import register_metrics_sink

    register_metric_providers(settings)
    register_local(settings)  # after the builtins: haproxy keeps the local stack's own observer
    register_metrics_sink()
    if settings.event_webhook:
        from activities.status.base import register_status_sink
        from activities.status.event_webhook import EventWebhookSink

        register_status_sink(EventWebhookSink(settings.event_webhook))
    if kubernetes_enabled(settings):
        from activities.kube.client import load_api_client

        register_kubernetes(load_api_client(settings), include_label_prefixes=_csv(settings.include_label_prefix))
        log.info("Kubernetes platform registered")
    else:
        # Keep an explicitly absent cluster visible: a Kubernetes canary then fails with "no workload registered".
        log.info("no Kubernetes configuration found: serving the local platform only")


def register_metric_providers(settings: Settings) -> None:
    from activities.metrics.base import LazyMetricProvider, register_builtin_observer, register_metric_provider
    from activities.metrics.builtins import builtin_observers
    from activities.metrics.prometheus import PrometheusProvider

    register_metric_provider("prometheus", PrometheusProvider())
    for type_name, class_name in VENDOR_METRIC_PROVIDERS.items():
        register_metric_provider(type_name, LazyMetricProvider(f"activities.metrics.{type_name}", class_name))
    for router, observer in builtin_observers(settings.metrics_server).items():
        register_builtin_observer(router, observer)


# MetricTemplate `provider.type` -> class in activities/metrics/<type>.py (imported on first use).
VENDOR_METRIC_PROVIDERS = {
    "datadog": "DatadogProvider",
    "cloudwatch": "CloudWatchProvider",
    "newrelic": "NewRelicProvider",
    "graphite": "GraphiteProvider",
    "influxdb": "InfluxDBProvider",
    "stackdriver": "StackdriverProvider",
    "dynatrace": "DynatraceProvider",
    "splunk": "SplunkProvider",
}


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register_kubernetes(api_client: object, *, include_label_prefixes: list[str] | None = None) -> None:
    """Workloads, routers, cluster-backed metric providers, Canary status sink and Secret reads for one cluster."""
    from kubernetes import client as k8s

    from activities.kube.secrets import cluster_secret_reader
    from activities.metrics.base import register_metric_provider
    from activities.metrics.externalmetrics import ExternalMetricsProvider
    from activities.metrics.keptn import KeptnProvider
    from activities.routers.base import register_router
    from activities.routers.kube_factory import kubernetes_routers
    from activities.secrets import use_cluster_secrets
    from activities.status.base import register_status_sink
    from activities.status.kubernetes import KubernetesStatusSink
    from activities.workloads.base import register_workload
    from activities.workloads.kubernetes import KubernetesWorkload

    assert isinstance(api_client, k8s.ApiClient)
    register_workload("kubernetes", KubernetesWorkload(api_client, include_label_prefixes=include_label_prefixes or ()))
    for key, router in kubernetes_routers(api_client).items():
        register_router(key, router)
    register_metric_provider("keptn", KeptnProvider(api_client))
    register_metric_provider("externalmetrics", ExternalMetricsProvider(api_client))
    register_status_sink(KubernetesStatusSink(api_client))
    use_cluster_secrets(cluster_secret_reader(api_client))
