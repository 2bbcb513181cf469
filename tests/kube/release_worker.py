"""A Temporal worker whose Kubernetes providers talk to fakekube, and the podinfo Deployment releases start from:
shared by the tests (and benchmarks) that run whole releases against fakekube."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from kubernetes import client as k8s
from temporalio.testing import WorkflowEnvironment

from activities.registry import default_activities
from activities.routers.base import ROUTERS, Router, register_router
from activities.routers.kube_factory import kubernetes_routers
from activities.status.base import STATUS_SINKS, register_status_sink
from activities.status.kubernetes import KubernetesStatusSink
from activities.workloads.base import WORKLOADS, register_workload
from activities.workloads.kubernetes import KubernetesWorkload
from canaryflow.settings import Settings
from tests.fakekube.fake import FakeKube
from workers.worker import build_worker

IMAGE_V1 = "ghcr.io/stefanprodan/podinfo:6.0.0"
IMAGE_V2 = "ghcr.io/stefanprodan/podinfo:6.0.1"


def podinfo_deployment(namespace: str = "test", image: str = IMAGE_V1) -> dict[str, Any]:
    """Flagger's podinfo Deployment: 2 replicas of `image`, container port 9898."""
    labels = {"app": "podinfo"}
    container = {"name": "podinfod", "image": image, "ports": [{"containerPort": 9898}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@asynccontextmanager
async def kube_worker(
    fake_kube: FakeKube,
    env: WorkflowEnvironment,
    settings: Settings,
    *,
    routers: Callable[[k8s.ApiClient], Mapping[str, Router]] = kubernetes_routers,
    status_sink: bool = False,
    poll_seconds: float = 0.05,
) -> AsyncIterator[None]:
    """A worker on `settings.task_queue` with the Kubernetes workload, `routers(api_client)` (default: every
    Kubernetes router) and, with `status_sink`, the Kubernetes status sink, all on fakekube; the provider
    registries are restored afterwards."""
    saved_workloads, saved_routers, saved_sinks = dict(WORKLOADS), dict(ROUTERS), dict(STATUS_SINKS)
    api_client = fake_kube.api_client()
    workload = KubernetesWorkload(api_client, poll_seconds=poll_seconds, primary_ready_wait_seconds=10)
    register_workload("kubernetes", workload)
    for key, router in routers(api_client).items():
        register_router(key, router)
    if status_sink:
        register_status_sink(KubernetesStatusSink(api_client))
    try:
        async with build_worker(env.client, settings, activities=default_activities()):
            yield
    finally:
        WORKLOADS.clear()
        WORKLOADS.update(saved_workloads)
        ROUTERS.clear()
        ROUTERS.update(saved_routers)
        STATUS_SINKS.clear()
        STATUS_SINKS.update(saved_sinks)
