"""KubernetesWorkload on a Deployment target, against fakekube over HTTP: objects are asserted as read back."""

from __future__ import annotations

import time
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_NOT_READY, ERR_PROGRESS_DEADLINE, ReadinessCheck, ReleaseTarget
from activities.kube.revision import workload_revision
from activities.workloads.kubernetes import KubernetesWorkload
from tests.fakekube.fake import FakeKube
from tests.kube.workload_fixtures import (
    HPA_REF,
    IMAGE_V1,
    IMAGE_V2,
    NS,
    deployment,
    get,
    hpa,
    initialized_app,
    kube_workload,
    make_canary,
    past_deadline,
    seed_app,
    set_image,
    update,
    writes,
)


@pytest.fixture
def workload(fake_kube: FakeKube) -> KubernetesWorkload:
    return kube_workload(fake_kube)


async def test_bootstrap_creates_primary_configs_autoscaler_and_services(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    canary = make_canary(autoscaler=HPA_REF)
    uid = seed_app(fake_kube, canary)
    fake_kube.requests.clear()
    owner = {
        "apiVersion": "canaryflow.dev/v1beta1",
        "kind": "Canary",
        "name": "podinfo",
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }

    result = await workload.initialize(ReleaseTarget(canary=canary))

    assert (result.needs_analysis, result.primary_bootstrapped) == (False, True)
    missing = [r.path for r in fake_kube.requests if r.method == "GET" and r.status == 404]
    assert "/apis/apps/v1/namespaces/test/deployments/podinfo-primary" in missing
    assert len(missing) == len(set(missing)), "an object found missing was looked up again"
    primary = deployment(fake_kube, "podinfo-primary")
    assert primary["metadata"]["ownerReferences"] == [owner]
    # No include-label prefix configured: only the selector label; toolkit/last-applied never copied.
    assert primary["metadata"]["labels"] == {"app": "podinfo-primary"}
    assert primary["metadata"]["annotations"]["team.example.com/owner"] == "web"
    assert primary["metadata"]["annotations"]["canaryflow.dev/revision"]
    spec = primary["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert (
        spec["replicas"],
        spec["progressDeadlineSeconds"],
        spec["minReadySeconds"],
        spec["revisionHistoryLimit"],
    ) == (
        2,
        60,
        3,
        5,
    )
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "podinfo-primary", "version": "v1"}
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["annotations"]["flagger-id"]
    pod = template["spec"]
    container = pod["containers"][0]
    assert container["image"] == IMAGE_V1
    assert container["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "podinfo-config-primary"
    assert container["envFrom"] == [{"configMapRef": {"name": "podinfo-untracked"}}]  # tracking disabled
    assert pod["volumes"][0]["secret"]["secretName"] == "podinfo-secret-primary"
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": {"app": "podinfo-primary"}}

    config_copy = get(fake_kube, "v1", "ConfigMap", "podinfo-config-primary")
    assert config_copy["data"] == {"color": "#34577c"}
    assert config_copy["metadata"]["ownerReferences"] == [owner]
    assert fake_kube.get("v1", "ConfigMap", "podinfo-untracked-primary", NS) is None
    secret_copy = get(fake_kube, "v1", "Secret", "podinfo-secret-primary")
    assert (secret_copy["type"], secret_copy["data"]) == ("Opaque", {"password": "czNjcjN0"})

    primary_hpa = get(fake_kube, "autoscaling/v2", "HorizontalPodAutoscaler", "podinfo-primary")
    assert primary_hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo-primary",
    }
    assert (primary_hpa["spec"]["minReplicas"], primary_hpa["spec"]["maxReplicas"]) == (2, 4)
    assert primary_hpa["spec"]["metrics"] == hpa()["spec"]["metrics"]
    assert primary_hpa["metadata"]["ownerReferences"] == [owner]

    for name, selector in (
        ("podinfo", "podinfo-primary"),
        ("podinfo-primary", "podinfo-primary"),
        ("podinfo-canary", "podinfo"),
    ):
        service = get(fake_kube, "v1", "Service", name)
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["selector"] == {"app": selector}
        assert service["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]
        assert service["metadata"]["labels"] == {"app": name}
        assert service["metadata"]["ownerReferences"] == [owner]

    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 0


async def test_second_initialize_writes_nothing(fake_kube: FakeKube, workload: KubernetesWorkload) -> None:
    canary = make_canary(autoscaler=HPA_REF)
    seed_app(fake_kube, canary)
    await workload.initialize(ReleaseTarget(canary=canary))
    primary_before = deployment(fake_kube, "podinfo-primary")
    fake_kube.requests.clear()

    again = await workload.initialize(ReleaseTarget(canary=canary))

    assert (again.needs_analysis, again.primary_bootstrapped) == (False, False)
    assert writes(fake_kube) == []
    assert (
        deployment(fake_kube, "podinfo-primary")["metadata"]["resourceVersion"]
        == primary_before["metadata"]["resourceVersion"]
    )


async def test_service_options_port_discovery_and_apex_metadata(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    canary = make_canary(
        portName="web",
        appProtocol="http",
        portDiscovery=True,
        apex={"labels": {"tier": "frontend"}, "annotations": {"note": "apex"}},
        canary={"annotations": {"note": "canary"}},
    )
    seed_app(fake_kube, canary, with_hpa=False)

    await workload.initialize(ReleaseTarget(canary=canary))

    apex = get(fake_kube, "v1", "Service", "podinfo")
    assert apex["metadata"]["labels"] == {"tier": "frontend", "app": "podinfo"}
    assert apex["metadata"]["annotations"] == {"note": "apex"}
    assert get(fake_kube, "v1", "Service", "podinfo-canary")["metadata"]["annotations"] == {"note": "canary"}
    assert apex["spec"]["ports"] == [
        {"name": "web", "protocol": "TCP", "port": 80, "targetPort": "http", "appProtocol": "http"},
        {"name": "grpc", "protocol": "TCP", "port": 9999, "targetPort": 9999},
    ]


async def test_existing_service_gets_selector_and_ports_but_keeps_foreign_metadata(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    canary = make_canary()
    seed_app(fake_kube, canary, with_hpa=False)
    fake_kube.seed(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "podinfo", "namespace": NS, "labels": {"owner": "helm"}},
            "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898}]},
        }
    )

    await workload.initialize(ReleaseTarget(canary=canary))

    apex = get(fake_kube, "v1", "Service", "podinfo")
    assert apex["spec"]["selector"] == {"app": "podinfo-primary"}
    assert apex["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}]
    assert apex["metadata"]["labels"] == {"owner": "helm"}  # not created by the Canary: metadata left alone


async def test_ci_image_goes_to_the_target_after_the_primary_is_copied(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    canary = make_canary()
    seed_app(fake_kube, canary, with_hpa=False)

    result = await workload.initialize(ReleaseTarget(canary=canary, image=IMAGE_V2))

    assert (result.needs_analysis, result.primary_bootstrapped) == (True, True)
    assert deployment(fake_kube, "podinfo-primary")["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V1
    target = deployment(fake_kube, "podinfo")
    assert target["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2
    assert target["spec"]["replicas"] == 0  # first sight: scaled down like Flagger; the release scales it up

    again = await workload.initialize(ReleaseTarget(canary=canary, image=IMAGE_V2))
    assert (again.needs_analysis, again.primary_bootstrapped) == (True, False)


async def test_new_revision_keeps_the_target_running_and_promotion_copies_everything(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    canary = make_canary(autoscaler=HPA_REF)
    seed_app(fake_kube, canary)
    target = ReleaseTarget(canary=canary)
    await workload.initialize(target)
    first_id = deployment(fake_kube, "podinfo-primary")["spec"]["template"]["metadata"]["annotations"]["flagger-id"]

    def new_version(dep: dict[str, Any]) -> None:
        dep["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE_V2
        dep["spec"]["template"]["metadata"]["labels"]["version"] = "v2"

    update(fake_kube, "apps/v1", "Deployment", "podinfo", new_version)
    update(fake_kube, "v1", "ConfigMap", "podinfo-config", lambda cm: cm["data"].update(color="#ff0000"))
    update(fake_kube, "autoscaling/v2", "HorizontalPodAutoscaler", "podinfo", lambda h: h["spec"].update(maxReplicas=8))

    found = await workload.initialize(target)
    assert found.needs_analysis
    assert get(fake_kube, "v1", "ConfigMap", "podinfo-config-primary")["data"] == {"color": "#34577c"}

    await workload.scale_from_zero(target)
    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 2  # the HPA's minimum (above 1)
    await workload.check_ready(ReadinessCheck(target=target, workload="canary"))

    await workload.promote(target)

    primary = deployment(fake_kube, "podinfo-primary")
    template = primary["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == IMAGE_V2
    assert (
        template["spec"]["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "podinfo-config-primary"
    )
    assert template["metadata"]["labels"] == {"app": "podinfo-primary", "version": "v2"}
    assert template["metadata"]["annotations"]["flagger-id"] != first_id
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert primary["spec"]["replicas"] == 2  # autoscaled: replicas stay the HPA's business
    assert get(fake_kube, "v1", "ConfigMap", "podinfo-config-primary")["data"] == {"color": "#ff0000"}
    assert get(fake_kube, "autoscaling/v2", "HorizontalPodAutoscaler", "podinfo-primary")["spec"]["maxReplicas"] == 8
    await workload.check_ready(ReadinessCheck(target=target, workload="primary"))

    assert primary["metadata"]["annotations"]["canaryflow.dev/revision"] == workload_revision(
        fake_kube.api_client(), canary
    )
    # The primary now runs the target's revision: the next release has nothing to analyse.
    await workload.scale_to_zero(target)
    settled = await workload.initialize(target)
    assert not settled.needs_analysis


async def test_repeated_promotion_does_not_roll_the_primary_again(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    target = await initialized_app(fake_kube, workload)
    set_image(fake_kube, "Deployment", "podinfo")
    await workload.promote(target)
    promoted = deployment(fake_kube, "podinfo-primary")
    fake_kube.requests.clear()

    await workload.promote(target)  # e.g. the activity retried after a lost response

    assert not [w for w in writes(fake_kube) if "deployments" in w]
    assert deployment(fake_kube, "podinfo-primary")["metadata"]["generation"] == promoted["metadata"]["generation"]


async def test_conflicts_during_promotion_are_retried_on_fresh_reads(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    target = await initialized_app(fake_kube, workload)
    set_image(fake_kube, "Deployment", "podinfo")
    update(fake_kube, "v1", "ConfigMap", "podinfo-config", lambda cm: cm["data"].update(color="#ff0000"))
    fake_kube.inject_fault("PUT", r"/deployments/podinfo-primary$", status=409, reason="Conflict", times=2)
    fake_kube.inject_fault("PUT", r"/configmaps/podinfo-config-primary$", status=409, reason="Conflict", times=1)

    await workload.promote(target)

    failed = [r for r in fake_kube.requests if r.method == "PUT" and r.status == 409]
    assert len(failed) == 3
    assert deployment(fake_kube, "podinfo-primary")["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V2
    assert get(fake_kube, "v1", "ConfigMap", "podinfo-config-primary")["data"] == {"color": "#ff0000"}


async def test_rollback_scales_the_canary_to_zero_and_leaves_the_primary_alone(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    target = await initialized_app(fake_kube, workload)
    set_image(fake_kube, "Deployment", "podinfo")
    await workload.scale_from_zero(target)
    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 2  # the primary's replicas (no autoscaler)
    primary_before = deployment(fake_kube, "podinfo-primary")

    await workload.scale_to_zero(target)
    await workload.scale_to_zero(target)

    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 0
    primary = deployment(fake_kube, "podinfo-primary")
    assert primary["metadata"]["resourceVersion"] == primary_before["metadata"]["resourceVersion"]
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_V1


async def test_stuck_rollout_is_not_ready_then_past_the_deadline(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    target = await initialized_app(fake_kube, workload)
    assert fake_kube.kubelet is not None
    fake_kube.kubelet.set_mode(NS, "podinfo", "stuck")
    await workload.scale_from_zero(target)

    with pytest.raises(ApplicationError) as waiting:
        await workload.check_ready(ReadinessCheck(target=target, workload="canary", rollout_started_at=time.time()))
    assert (waiting.value.type, waiting.value.non_retryable) == (ERR_NOT_READY, False)
    assert waiting.value.message == (
        "canary deployment podinfo.test not ready: "
        "waiting for rollout to finish: 1 out of 2 new replicas have been updated"
    )

    await past_deadline(workload, target, 60)

    fake_kube.kubelet.set_mode(NS, "podinfo", "progress-deadline-exceeded")
    with pytest.raises(ApplicationError) as exceeded:
        await workload.check_ready(ReadinessCheck(target=target, workload="canary", rollout_started_at=time.time()))
    assert (exceeded.value.type, exceeded.value.non_retryable) == (ERR_PROGRESS_DEADLINE, True)
    assert (
        exceeded.value.message
        == 'canary deployment podinfo.test not ready: deployment "podinfo" exceeded its progress deadline'
    )


async def test_initialize_waits_for_the_primary_before_switching_traffic(fake_kube: FakeKube) -> None:
    workload = kube_workload(fake_kube, primary_ready_wait_seconds=0.2)
    canary = make_canary()
    seed_app(fake_kube, canary, with_hpa=False)
    assert fake_kube.kubelet is not None
    fake_kube.kubelet.set_mode(NS, "podinfo-primary", "stuck")

    with pytest.raises(ApplicationError) as waiting:
        await workload.initialize(ReleaseTarget(canary=canary))

    assert waiting.value.type == ERR_NOT_READY
    assert fake_kube.get("v1", "Service", "podinfo", NS) is None  # the apex still does not exist
    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 2  # the target keeps serving

    fake_kube.kubelet.set_mode(NS, "podinfo-primary", "ready")
    result = await workload.initialize(ReleaseTarget(canary=canary))
    assert result.primary_bootstrapped  # created by the first attempt, which stopped before the apex switch
    assert get(fake_kube, "v1", "Service", "podinfo")["spec"]["selector"] == {"app": "podinfo-primary"}
    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 0


async def test_missing_target_is_a_typed_non_retryable_error(fake_kube: FakeKube, workload: KubernetesWorkload) -> None:
    with pytest.raises(ApplicationError) as missing:
        await workload.initialize(ReleaseTarget(canary=make_canary()))
    assert (missing.value.type, missing.value.non_retryable) == ("TargetNotFound", True)


async def test_without_a_canary_object_nothing_is_owned_and_label_prefixes_are_copied(fake_kube: FakeKube) -> None:
    workload = kube_workload(fake_kube, include_label_prefixes=["team"])
    canary = make_canary()
    seed_app(fake_kube, canary, with_hpa=False)
    fake_kube.store.delete(fake_kube.resource_type("canaryflow.dev/v1beta1", "Canary"), NS, "podinfo")

    await workload.initialize(ReleaseTarget(canary=canary))

    primary = deployment(fake_kube, "podinfo-primary")
    assert "ownerReferences" not in primary["metadata"]
    assert primary["metadata"]["labels"] == {"app": "podinfo-primary", "team": "web"}
    assert "ownerReferences" not in get(fake_kube, "v1", "Service", "podinfo")["metadata"]
    assert "ownerReferences" not in get(fake_kube, "v1", "ConfigMap", "podinfo-config-primary")["metadata"]


async def test_finalize_gives_the_app_back_to_the_target(fake_kube: FakeKube, workload: KubernetesWorkload) -> None:
    canary = make_canary()
    seed_app(fake_kube, canary, with_hpa=False)
    last_applied = '{"apiVersion":"v1","kind":"Service","spec":{"selector":{"app":"podinfo","tier":"web"}}}'
    fake_kube.seed(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "podinfo",
                "namespace": NS,
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
            },
            "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 80}]},
        }
    )
    target = ReleaseTarget(canary=canary)
    await workload.initialize(target)
    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 0
    assert get(fake_kube, "v1", "Service", "podinfo")["spec"]["selector"] == {"app": "podinfo-primary"}

    await workload.finalize(target)

    assert deployment(fake_kube, "podinfo")["spec"]["replicas"] == 2  # the primary's
    assert get(fake_kube, "v1", "Service", "podinfo")["spec"]["selector"] == {"app": "podinfo", "tier": "web"}
    # Services the Canary created are left to the garbage collector.
    assert get(fake_kube, "v1", "Service", "podinfo-canary")["spec"]["selector"] == {"app": "podinfo"}
