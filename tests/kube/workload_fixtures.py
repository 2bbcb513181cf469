"""Shared objects and steps of the KubernetesWorkload tests (fakekube over HTTP): the podinfo app and its Canary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_PROGRESS_DEADLINE, ReadinessCheck, ReleaseTarget
from activities.workloads.kubernetes import KubernetesWorkload
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube

NS = "test"
IMAGE_V1 = "ghcr.io/stefanprodan/podinfo:6.0.0"
IMAGE_V2 = "ghcr.io/stefanprodan/podinfo:6.0.1"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def podinfo_deployment(image: str = IMAGE_V1, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "podinfo",
            "namespace": NS,
            "labels": {"app": "podinfo", "team": "web", "kustomize.toolkit.fluxcd.io/name": "apps"},
            "annotations": {"team.example.com/owner": "web"},
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 60,
            "minReadySeconds": 3,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {
                    "labels": {"app": "podinfo", "version": "v1"},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "podinfod",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 9898}, {"name": "grpc", "containerPort": 9999}],
                            "env": [
                                {
                                    "name": "PODINFO_UI_COLOR",
                                    "valueFrom": {"configMapKeyRef": {"name": "podinfo-config", "key": "color"}},
                                }
                            ],
                            "envFrom": [{"configMapRef": {"name": "podinfo-untracked"}}],
                            "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}],
                        }
                    ],
                    "volumes": [{"name": "creds", "secret": {"secretName": "podinfo-secret"}}],
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": {"app": "podinfo"}},
                        }
                    ],
                },
            },
        },
    }


def config_map(name: str, data: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"app": "podinfo"}}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "podinfo-secret", "namespace": NS},
        "type": "Opaque",
        "data": {"password": "czNjcjN0"},
    }


def hpa(max_replicas: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 90}},
                }
            ],
        },
    }


def make_canary(*, autoscaler: dict[str, Any] | None = None, **service: Any) -> Canary:
    spec: dict[str, Any] = {
        "provider": "kubernetes",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "progressDeadlineSeconds": 60,
        "service": {"port": 80, "targetPort": "http", **service},
        "analysis": {"interval": "10s", "threshold": 2, "iterations": 3},
    }
    if autoscaler is not None:
        spec["autoscalerRef"] = autoscaler
    return Canary.model_validate(
        {
            "apiVersion": "canaryflow.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": NS},
            "spec": spec,
        }
    )


HPA_REF = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}


def seed_app(fake: FakeKube, canary: Canary, *, with_hpa: bool = True) -> str:
    """Seed the target, its configs (and HPA) and the Canary object; returns the Canary's uid."""
    fake.seed(config_map("podinfo-config", {"color": "#34577c"}))
    fake.seed(config_map("podinfo-untracked", {"MODE": "x"}, {"flagger.app/config-tracking": "disabled"}))
    fake.seed(secret())
    if with_hpa:
        fake.seed(hpa())
    fake.seed(podinfo_deployment())
    stored = fake.seed(canary.model_dump(by_alias=True, exclude_none=True))
    uid: str = stored["metadata"]["uid"]
    return uid


def get(fake: FakeKube, api_version: str, kind: str, name: str) -> dict[str, Any]:
    found = fake.get(api_version, kind, name, NS)
    assert found is not None, f"{kind} {name} not found"
    return found


def deployment(fake: FakeKube, name: str) -> dict[str, Any]:
    return get(fake, "apps/v1", "Deployment", name)


def update(fake: FakeKube, api_version: str, kind: str, name: str, change: Any) -> None:
    obj = get(fake, api_version, kind, name)
    change(obj)
    obj.pop("status", None)
    fake.seed(obj)


def writes(fake: FakeKube) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.requests if r.method in WRITES]


def kube_workload(
    fake: FakeKube, *, include_label_prefixes: Sequence[str] = (), primary_ready_wait_seconds: float = 2
) -> KubernetesWorkload:
    """A provider polling fast enough for tests."""
    return KubernetesWorkload(
        fake.api_client(),
        include_label_prefixes=include_label_prefixes,
        poll_seconds=0.01,
        primary_ready_wait_seconds=primary_ready_wait_seconds,
    )


def set_image(fake: FakeKube, kind: str, name: str, image: str = IMAGE_V2) -> None:
    """A new release of a workload: its first container runs `image`."""
    update(fake, "apps/v1", kind, name, lambda w: w["spec"]["template"]["spec"]["containers"][0].update(image=image))


async def initialized_app(fake: FakeKube, workload: KubernetesWorkload) -> ReleaseTarget:
    """The podinfo app (no autoscaler) seeded and initialized: primary bootstrapped, target at zero."""
    canary = make_canary()
    seed_app(fake, canary, with_hpa=False)
    target = ReleaseTarget(canary=canary)
    await workload.initialize(target)
    return target


async def past_deadline(workload: KubernetesWorkload, target: ReleaseTarget, deadline_seconds: int) -> ApplicationError:
    """check_ready of a canary whose rollout started longer than `deadline_seconds` ago: stuck for good."""
    with pytest.raises(ApplicationError) as late:
        await workload.check_ready(
            ReadinessCheck(
                target=target,
                workload="canary",
                progress_deadline_seconds=deadline_seconds,
                rollout_started_at=time.time() - deadline_seconds - 1,
            )
        )
    assert (late.value.type, late.value.non_retryable) == (ERR_PROGRESS_DEADLINE, True)
    return late.value
