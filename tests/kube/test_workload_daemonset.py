"""KubernetesWorkload on a DaemonSet target: Flagger's node-selector scale-to-zero, promotion, readiness."""

from __future__ import annotations

import time
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, ERR_NOT_READY, ReadinessCheck, ReleaseTarget
from activities.kube.revision import workload_revision
from activities.workloads.kubernetes import KubernetesWorkload
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube
from tests.kube.workload_fixtures import (
    IMAGE_V1,
    IMAGE_V2,
    NS,
    config_map,
    get,
    kube_workload,
    past_deadline,
    set_image,
)

SCALED_DOWN = {"flagger.app/scale-to-zero": "true"}


def daemonset(strategy: str = "RollingUpdate") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": NS, "labels": {"name": "agent"}},
        "spec": {
            "selector": {"matchLabels": {"name": "agent"}},
            "updateStrategy": {"type": strategy},
            "template": {
                "metadata": {"labels": {"name": "agent"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [
                        {
                            "name": "agent",
                            "image": IMAGE_V1,
                            "envFrom": [{"configMapRef": {"name": "agent-config"}}],
                            "ports": [{"name": "http", "containerPort": 9898}],
                        }
                    ],
                },
            },
        },
    }


def daemonset_canary() -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {
                "provider": "kubernetes",
                "targetRef": {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"},
                "service": {"port": 9898},
                "analysis": {"interval": "10s", "threshold": 1, "iterations": 2},
            },
        }
    )


def seed_agent(fake: FakeKube, strategy: str = "RollingUpdate") -> None:
    fake.seed(config_map("agent-config", {"LOG": "info"}))
    fake.seed(daemonset(strategy))


def ds(fake: FakeKube, name: str) -> dict[str, Any]:
    return get(fake, "apps/v1", "DaemonSet", name)


@pytest.fixture
def workload(fake_kube: FakeKube) -> KubernetesWorkload:
    return kube_workload(fake_kube)


async def test_daemonset_lifecycle(fake_kube: FakeKube, workload: KubernetesWorkload) -> None:
    canary = daemonset_canary()
    seed_agent(fake_kube)
    stored = fake_kube.seed(canary.model_dump(by_alias=True, exclude_none=True))
    target = ReleaseTarget(canary=canary)
    revision_before = workload_revision(fake_kube.api_client(), canary)

    result = await workload.initialize(target)

    assert (result.needs_analysis, result.primary_bootstrapped) == (False, True)
    primary = ds(fake_kube, "agent-primary")
    assert primary["metadata"]["ownerReferences"][0]["uid"] == stored["metadata"]["uid"]
    assert primary["metadata"]["ownerReferences"][0]["apiVersion"] == "flagger.app/v1beta1"
    assert primary["spec"]["selector"] == {"matchLabels": {"name": "agent-primary"}}
    assert primary["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    pod = primary["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": "agent-config-primary"}}]
    assert get(fake_kube, "v1", "Service", "agent")["spec"]["selector"] == {"name": "agent-primary"}
    assert get(fake_kube, "v1", "Service", "agent-canary")["spec"]["selector"] == {"name": "agent"}
    # "Zero" for a DaemonSet: a node selector no node matches.
    assert ds(fake_kube, "agent")["spec"]["template"]["spec"]["nodeSelector"] == {
        "kubernetes.io/os": "linux",
        **SCALED_DOWN,
    }
    revision_at_zero = workload_revision(fake_kube.api_client(), canary)
    assert revision_at_zero == revision_before  # the scale-to-zero node selector is not a new revision

    set_image(fake_kube, "DaemonSet", "agent")
    assert (await workload.initialize(target)).needs_analysis
    await workload.scale_from_zero(target)
    assert ds(fake_kube, "agent")["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert workload_revision(fake_kube.api_client(), canary) != revision_at_zero
    await workload.check_ready(ReadinessCheck(target=target, workload="canary"))

    await workload.promote(target)
    promoted = ds(fake_kube, "agent-primary")["spec"]["template"]["spec"]
    assert promoted["containers"][0]["image"] == IMAGE_V2
    assert promoted["nodeSelector"] == {"kubernetes.io/os": "linux"}

    await workload.scale_to_zero(target)
    assert ds(fake_kube, "agent")["spec"]["template"]["spec"]["nodeSelector"] == {
        "kubernetes.io/os": "linux",
        **SCALED_DOWN,
    }
    assert not (await workload.initialize(target)).needs_analysis


async def test_daemonset_readiness_and_deadline(fake_kube: FakeKube, workload: KubernetesWorkload) -> None:
    canary = daemonset_canary()
    seed_agent(fake_kube)
    target = ReleaseTarget(canary=canary)
    await workload.initialize(target)
    assert fake_kube.kubelet is not None
    fake_kube.kubelet.set_mode(NS, "agent", "stuck")

    with pytest.raises(ApplicationError) as waiting:
        await workload.check_ready(ReadinessCheck(target=target, workload="canary", rollout_started_at=time.time()))
    assert waiting.value.type == ERR_NOT_READY
    assert waiting.value.message == (
        "canary daemonset agent.test not ready: waiting for rollout to finish: 0 out of 1 new pods have been updated"
    )
    late = await past_deadline(workload, target, 30)
    assert late.message.endswith("exceeded its progressDeadlineSeconds: 30")


async def test_daemonset_needs_rolling_update(fake_kube: FakeKube, workload: KubernetesWorkload) -> None:
    seed_agent(fake_kube, strategy="OnDelete")
    with pytest.raises(ApplicationError) as invalid:
        await workload.initialize(ReleaseTarget(canary=daemonset_canary()))
    assert invalid.value.type == ERR_INVALID_SPEC
    assert fake_kube.get("apps/v1", "DaemonSet", "agent-primary", NS) is None


async def test_daemonset_finalize_removes_the_scale_to_zero_selector(
    fake_kube: FakeKube, workload: KubernetesWorkload
) -> None:
    seed_agent(fake_kube)
    target = ReleaseTarget(canary=daemonset_canary())
    await workload.initialize(target)
    assert "flagger.app/scale-to-zero" in ds(fake_kube, "agent")["spec"]["template"]["spec"]["nodeSelector"]

    await workload.finalize(target)

    assert ds(fake_kube, "agent")["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
