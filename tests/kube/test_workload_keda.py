"""KubernetesWorkload with a KEDA ScaledObject (`spec.autoscalerRef`): primary copy, pause/resume, promotion."""

from __future__ import annotations

from typing import Any

from activities.contracts import ReleaseTarget
from tests.fakekube.fake import FakeKube
from tests.kube.workload_fixtures import NS, get, kube_workload, make_canary, seed_app, set_image, update

KEDA = "keda.sh/v1alpha1"
PAUSED = "autoscaling.keda.sh/paused-replicas"
SO_REF = {"apiVersion": KEDA, "kind": "ScaledObject", "name": "podinfo-so"}


def scaled_object() -> dict[str, Any]:
    return {
        "apiVersion": KEDA,
        "kind": "ScaledObject",
        "metadata": {"name": "podinfo-so", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "scaleTargetRef": {"name": "podinfo"},
            "pollingInterval": 10,
            "cooldownPeriod": 20,
            "minReplicaCount": 3,
            "maxReplicaCount": 10,
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "rps",
                    "metadata": {
                        "serverAddress": "http://prometheus.monitoring:9090",
                        "query": 'sum(rate(http_requests_total{deployment="podinfo-canary"}[1m]))',
                        "threshold": "100",
                    },
                }
            ],
        },
    }


def scaled(fake: FakeKube, name: str) -> dict[str, Any]:
    return get(fake, KEDA, "ScaledObject", name)


async def test_scaled_object_primary_pause_resume_and_promotion(fake_kube: FakeKube) -> None:
    workload = kube_workload(fake_kube)
    canary = make_canary(autoscaler=SO_REF)
    fake_kube.seed(scaled_object())
    seed_app(fake_kube, canary, with_hpa=False)
    target = ReleaseTarget(canary=canary)

    await workload.initialize(target)

    primary_so = scaled(fake_kube, "podinfo-so-primary")
    assert primary_so["spec"]["scaleTargetRef"] == {"name": "podinfo-primary"}
    assert primary_so["spec"]["triggers"][0]["metadata"]["query"] == (
        'sum(rate(http_requests_total{deployment="podinfo-primary"}[1m]))'
    )
    assert (primary_so["spec"]["minReplicaCount"], primary_so["spec"]["maxReplicaCount"]) == (3, 10)
    assert PAUSED not in (primary_so["metadata"].get("annotations") or {})
    assert scaled(fake_kube, "podinfo-so")["metadata"]["annotations"][PAUSED] == "0"
    assert get(fake_kube, "apps/v1", "Deployment", "podinfo")["spec"]["replicas"] == 0

    set_image(fake_kube, "Deployment", "podinfo")
    assert (await workload.initialize(target)).needs_analysis
    await workload.scale_from_zero(target)
    assert PAUSED not in (scaled(fake_kube, "podinfo-so")["metadata"].get("annotations") or {})
    assert get(fake_kube, "apps/v1", "Deployment", "podinfo")["spec"]["replicas"] == 3  # the ScaledObject's minimum

    def more_capacity(so: dict[str, Any]) -> None:
        so["spec"]["maxReplicaCount"] = 20
        so["spec"]["triggers"][0]["metadata"]["threshold"] = "50"

    update(fake_kube, KEDA, "ScaledObject", "podinfo-so", more_capacity)
    primary_replicas = get(fake_kube, "apps/v1", "Deployment", "podinfo-primary")["spec"]["replicas"]
    await workload.promote(target)

    promoted = scaled(fake_kube, "podinfo-so-primary")["spec"]
    assert promoted["maxReplicaCount"] == 20
    assert promoted["triggers"][0]["metadata"]["threshold"] == "50"
    assert promoted["triggers"][0]["metadata"]["query"].count("podinfo-primary") == 1
    assert get(fake_kube, "apps/v1", "Deployment", "podinfo-primary")["spec"]["replicas"] == primary_replicas

    await workload.scale_to_zero(target)
    assert scaled(fake_kube, "podinfo-so")["metadata"]["annotations"][PAUSED] == "0"
    assert get(fake_kube, "apps/v1", "Deployment", "podinfo")["spec"]["replicas"] == 0
