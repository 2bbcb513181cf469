"""Flagger's rules for Kubernetes workloads that need no API server: readiness, labels, images, KEDA queries."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.kube.autoscalers import primary_hpa_spec, primary_scaled_object_spec
from activities.kube.labels import include_by_prefix, primary_labels, selector_label
from activities.kube.podspec import image_repository, set_container_image
from activities.kube.readiness import daemonset_readiness, deployment_readiness, threshold_count
from canaryflow.spec import Canary

NOW = 1_800_000_000.0


def _deployment(status: dict[str, Any], *, replicas: int = 2, generation: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"name": "podinfo", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 3, **status},
    }


def _ready(dep: dict[str, Any], threshold: int = 100, started_at: float = 0.0) -> Any:
    return deployment_readiness(dep, threshold_percent=threshold, deadline_seconds=600, started_at=started_at, now=NOW)


def test_deployment_readiness_messages_follow_flagger() -> None:
    assert _ready(_deployment({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2})).ready
    unobserved = _ready(_deployment({"updatedReplicas": 2, "availableReplicas": 2}, generation=4))
    assert (unobserved.ready, unobserved.retryable) == (False, True)
    assert unobserved.message == (
        "waiting for rollout to finish: observed deployment generation less than desired generation"
    )
    assert _ready(_deployment({"replicas": 2, "updatedReplicas": 1})).message == (
        "waiting for rollout to finish: 1 out of 2 new replicas have been updated"
    )
    assert _ready(_deployment({"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2})).message == (
        "waiting for rollout to finish: 1 old replicas are pending termination"
    )
    assert _ready(_deployment({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1})).message == (
        "waiting for rollout to finish: 1 of 2 (readyThreshold 100%) updated replicas are available"
    )
    # 50% of 2 updated replicas = 1 must be available.
    assert _ready(_deployment({"replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}), threshold=50).ready


def test_deployment_progress_deadline_is_not_retryable() -> None:
    exceeded = _ready(
        _deployment(
            {
                "replicas": 2,
                "updatedReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
            }
        )
    )
    assert (exceeded.ready, exceeded.retryable) == (False, False)
    assert exceeded.message == 'deployment "podinfo" exceeded its progress deadline'
    unavailable_too_long = _ready(
        _deployment(
            {
                "replicas": 2,
                "updatedReplicas": 2,
                "availableReplicas": 0,
                "conditions": [
                    {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                    {
                        "type": "Available",
                        "status": "False",
                        "reason": "MinimumReplicasUnavailable",
                        "lastUpdateTime": "2027-01-15T07:00:00Z",  # NOW is 2027-01-15T08:00:00Z
                    },
                ],
            }
        )
    )
    assert (unavailable_too_long.ready, unavailable_too_long.retryable) == (False, False)
    # Our own deadline: unfinished 601 s after the rollout started.
    stuck = _ready(_deployment({"replicas": 2, "updatedReplicas": 1}), started_at=NOW - 601)
    assert (stuck.ready, stuck.retryable) == (False, False)
    assert stuck.message.startswith("waiting for rollout to finish: 1 out of 2 new replicas have been updated")
    assert _ready(_deployment({"replicas": 2, "updatedReplicas": 1}), started_at=NOW - 599).retryable


def test_daemonset_readiness() -> None:
    def check(status: dict[str, Any], started_at: float = NOW - 10) -> Any:
        daemonset = {"metadata": {"name": "ds", "generation": 1}, "status": {"observedGeneration": 1, **status}}
        return daemonset_readiness(
            daemonset, threshold_percent=100, deadline_seconds=60, started_at=started_at, now=NOW
        )

    assert check({"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}).ready
    assert check({"desiredNumberScheduled": 3, "updatedNumberScheduled": 1, "numberAvailable": 3}).message == (
        "waiting for rollout to finish: 1 out of 3 new pods have been updated"
    )
    assert check({"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}).message == (
        "waiting for rollout to finish: 2 of 3 (readyThreshold 100%) updated pods are available"
    )
    late = check({"desiredNumberScheduled": 3, "updatedNumberScheduled": 1}, started_at=NOW - 61)
    assert (late.retryable, late.message) == (False, "exceeded its progressDeadlineSeconds: 60")


def test_threshold_count_truncates_like_float32() -> None:
    assert [threshold_count(3, 50), threshold_count(10, 10), threshold_count(100, 29), threshold_count(7, 100)] == [
        1,
        1,
        29,
        7,
    ]


def test_selector_label_resolution_order_and_primary_labels() -> None:
    workload = {"spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "web", "name": "podinfo"}}}}
    assert selector_label(workload) == ("name", "podinfo")
    with pytest.raises(ApplicationError, match="must contain one of"):
        selector_label({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {}}}})
    assert primary_labels(
        {"name": "podinfo", "team": "a", "kustomize.toolkit.fluxcd.io/name": "x"}, "name", "podinfo-primary"
    ) == {
        "name": "podinfo-primary",
        "team": "a",
    }
    labels = {"team": "a", "app.kubernetes.io/part-of": "shop", "kustomize.toolkit.fluxcd.io/name": "x"}
    assert include_by_prefix(labels, []) == {}
    assert include_by_prefix(labels, ["app.kubernetes.io"]) == {"app.kubernetes.io/part-of": "shop"}
    assert include_by_prefix(labels, ["*"]) == {"team": "a", "app.kubernetes.io/part-of": "shop"}


def test_ci_image_goes_to_the_container_of_the_same_repository() -> None:
    assert image_repository("registry:5000/team/app:v2") == "registry:5000/team/app"
    assert image_repository("registry:5000/team/app@sha256:abc") == "registry:5000/team/app"
    assert image_repository("app") == "app"
    pod_spec = {"containers": [{"name": "proxy", "image": "envoy:1.30"}, {"name": "app", "image": "ghcr.io/x/app:1"}]}
    assert set_container_image(pod_spec, "ghcr.io/x/app:2")
    assert [c["image"] for c in pod_spec["containers"]] == ["envoy:1.30", "ghcr.io/x/app:2"]
    assert not set_container_image(pod_spec, "ghcr.io/x/app:2")
    assert set_container_image(pod_spec, "other/thing:3")
    assert pod_spec["containers"][0]["image"] == "other/thing:3"


def _canary(autoscaler: dict[str, Any]) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "autoscalerRef": autoscaler,
                "service": {"port": 80},
                "analysis": {"interval": "1m", "threshold": 1, "iterations": 2},
            },
        }
    )


def test_keda_primary_queries_point_at_the_primary() -> None:
    scaled_object: dict[str, Any] = {
        "spec": {
            "scaleTargetRef": {"name": "podinfo"},
            "minReplicaCount": 1,
            "advanced": {"horizontalPodAutoscalerConfig": {"name": "podinfo-hpa"}},
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "rps",
                    "metadata": {"query": 'sum(rate(x{pod=~"podinfo-canary-.*"}[1m])) + sum(y{app="podinfo"})'},
                }
            ],
        }
    }
    rewritten = primary_scaled_object_spec(
        _canary({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so"}), scaled_object
    )
    assert rewritten["scaleTargetRef"] == {"name": "podinfo-primary"}
    assert rewritten["triggers"][0]["metadata"]["query"] == (
        'sum(rate(x{pod=~"podinfo-primary-.*"}[1m])) + sum(y{app="podinfo-primary"})'
    )
    assert rewritten["advanced"]["horizontalPodAutoscalerConfig"]["name"] == "podinfo-hpa-primary"
    replaced = primary_scaled_object_spec(
        _canary(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "name": "podinfo-so",
                "primaryScalerQueries": {"rps": "sum(primary_rps)"},
                "primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 5},
            }
        ),
        scaled_object,
    )
    assert replaced["triggers"][0]["metadata"]["query"] == "sum(primary_rps)"
    assert (replaced["minReplicaCount"], replaced["maxReplicaCount"]) == (2, 5)
    assert scaled_object["spec"]["triggers"][0]["metadata"]["query"].startswith('sum(rate(x{pod=~"podinfo-canary')


def test_primary_hpa_scales_the_primary_with_primary_scaler_replicas() -> None:
    hpa: dict[str, Any] = {
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        }
    }
    ref = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"}
    assert primary_hpa_spec(_canary(ref), hpa) == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-primary"},
        "minReplicas": 2,
        "maxReplicas": 4,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
    }
    only_max = primary_hpa_spec(_canary({**ref, "primaryScalerReplicas": {"maxReplicas": 10}}), hpa)
    assert (only_max["minReplicas"], only_max["maxReplicas"]) == (2, 10)
