"""Whole releases per router: the release workflow on the time-skipping server, a worker whose Kubernetes workload
and routers talk to fakekube, and the routing object checked at every traffic step (read back from the writes
the fake recorded) and at the end."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.routers import gatewayapi, istio, nginx, smi
from canaryflow.client import start_release
from canaryflow.loader import parse_resource
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube
from tests.kube.release_worker import IMAGE_V1, IMAGE_V2, kube_worker, podinfo_deployment
from tests.kube.router_fixtures import ROUTER_DATA, yaml_object
from tests.workflow.harness import hook_server, webhook
from workflows.model import ReleaseRequest, ReleaseResult

NS = "test"
Step = tuple[int, int, bool]  # primary weight, canary weight, mirrored
# What stepWeight 25 / maxWeight 50 writes: all primary, two steps, back to the primary after promotion.
WEIGHTED_STEPS: list[Step] = [(100, 0, False), (75, 25, False), (50, 50, False), (100, 0, False)]


@dataclass(frozen=True)
class RouterCase:
    provider: str
    service: dict[str, Any]
    path: str  # the routing object's URL path tail, to find the writes the fake recorded
    read_step: Callable[[Canary, dict[str, Any]], Step]
    api_version: str
    kind: str
    name: str = "podinfo"


def _gateway_step(canary: Canary, route: dict[str, Any]) -> Step:
    found = gatewayapi.routes_of(canary, route)
    return found.primary_weight, found.canary_weight, found.mirrored


def _istio_step(canary: Canary, service: dict[str, Any]) -> Step:
    return istio.routes_of(canary, service)


def _smi_step(canary: Canary, split: dict[str, Any]) -> Step:
    primary, canary_weight = smi.routes_of(canary, split)
    return primary, canary_weight, False


def _nginx_step(canary: Canary, ingress: dict[str, Any]) -> Step:
    annotations = nginx.Annotations(nginx.DEFAULT_ANNOTATIONS_PREFIX)
    found = annotations.routes(canary, ingress["metadata"].get("annotations") or {})
    return found.primary_weight, found.canary_weight, False


CASES = {
    "istio": RouterCase(
        "istio", {}, "/virtualservices/podinfo", _istio_step, "networking.istio.io/v1beta1", "VirtualService"
    ),
    "gatewayapi": RouterCase(
        "gatewayapi:v1",
        {"gatewayRefs": [{"name": "gateway", "namespace": "istio-ingress"}], "hosts": ["www.example.com"]},
        "/httproutes/podinfo",
        _gateway_step,
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
    ),
    "linkerd": RouterCase(
        "linkerd", {}, "/trafficsplits/podinfo", _smi_step, "split.smi-spec.io/v1alpha1", "TrafficSplit"
    ),
    "nginx": RouterCase(
        "nginx",
        {"port": 80, "targetPort": 9898},
        "/ingresses/podinfo-canary",
        _nginx_step,
        "networking.k8s.io/v1",
        "Ingress",
        "podinfo-canary",
    ),
}


def release_canary(provider: str, service: dict[str, Any], **analysis: Any) -> Canary:
    spec: dict[str, Any] = {
        "provider": provider,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898, **service},
        "analysis": {"interval": "1m", "threshold": 2, **analysis},
    }
    if provider == "nginx":
        spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": NS},
            "spec": spec,
        }
    )
    assert isinstance(resource, Canary)
    return resource


async def release(fake_kube: FakeKube, env: WorkflowEnvironment, canary: Canary) -> ReleaseResult:
    """Release image v2 of `canary` to its end, on a worker with the Kubernetes workload and routers."""
    settings = Settings(task_queue=f"test-{uuid.uuid4()}", min_interval_seconds=0)
    # Workflow ids are per canary and the test server is shared by every test: a unique revision and a
    # terminated leftover keep tests apart.
    request = ReleaseRequest(
        canary=canary, revision=f"v2-{uuid.uuid4().hex[:6]}", image=IMAGE_V2, requested_by="ci", min_interval_seconds=0
    )
    async with kube_worker(fake_kube, env, settings):
        started = await start_release(env.client, request, task_queue=settings.task_queue, cluster=uuid.uuid4().hex[:8])
        return await started.handle.result()


def traffic_steps(fake_kube: FakeKube, case: RouterCase, canary: Canary) -> list[Step]:
    """Every state the routing object was successfully written in, in order (consecutive repeats dropped)."""
    collection = case.path.rpartition("/")[0]
    steps: list[Step] = []
    for request in fake_kube.requests:
        if request.status not in (200, 201):
            continue
        created = request.method == "POST" and request.path.endswith(collection)
        replaced = request.method == "PUT" and request.path.endswith(case.path)
        if not (replaced or (created and request.body["metadata"]["name"] == case.name)):
            continue
        step = case.read_step(canary, request.body)
        if not steps or steps[-1] != step:
            steps.append(step)
    return steps


def final_step(fake_kube: FakeKube, case: RouterCase, canary: Canary) -> Step:
    found = fake_kube.get(case.api_version, case.kind, case.name, NS)
    assert found is not None, f"{case.kind} {case.name} was not created"
    return case.read_step(canary, found)


def primary_image(fake_kube: FakeKube) -> str:
    primary = fake_kube.get("apps/v1", "Deployment", "podinfo-primary", NS)
    assert primary is not None
    image: str = primary["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def seed_platform(fake_kube: FakeKube, case: RouterCase) -> None:
    fake_kube.seed(podinfo_deployment(NS))
    if case.provider == "nginx":
        ingress = yaml_object(ROUTER_DATA / "nginx" / "ingress-podinfo.yaml")
        fake_kube.seed(ingress)


@pytest.mark.parametrize("router", sorted(CASES))
async def test_a_weighted_canary_is_promoted(
    fake_kube: FakeKube, time_skipping_env: WorkflowEnvironment, router: str
) -> None:
    case = CASES[router]
    seed_platform(fake_kube, case)
    canary = release_canary(case.provider, case.service, stepWeight=25, maxWeight=50)

    result = await release(fake_kube, time_skipping_env, canary)

    assert result.phase == "Succeeded", result
    assert traffic_steps(fake_kube, case, canary) == WEIGHTED_STEPS
    assert final_step(fake_kube, case, canary) == (100, 0, False)
    assert primary_image(fake_kube) == IMAGE_V2


@pytest.mark.parametrize("router", ["istio", "gatewayapi", "nginx"])
async def test_ab_testing_sends_matching_requests_to_the_canary_then_promotes(
    fake_kube: FakeKube, time_skipping_env: WorkflowEnvironment, router: str
) -> None:
    case = CASES[router]
    seed_platform(fake_kube, case)
    canary = release_canary(
        case.provider, case.service, iterations=2, match=[{"headers": {"x-canary": {"exact": "insider"}}}]
    )

    result = await release(fake_kube, time_skipping_env, canary)

    assert result.phase == "Succeeded", result
    assert traffic_steps(fake_kube, case, canary) == [(100, 0, False), (0, 100, False), (100, 0, False)]
    assert primary_image(fake_kube) == IMAGE_V2


async def test_blue_green_with_mirroring_on_the_gateway_api(
    fake_kube: FakeKube, time_skipping_env: WorkflowEnvironment
) -> None:
    case = CASES["gatewayapi"]
    seed_platform(fake_kube, case)
    canary = release_canary(case.provider, case.service, iterations=2, mirror=True)

    result = await release(fake_kube, time_skipping_env, canary)

    assert result.phase == "Succeeded", result
    steps = traffic_steps(fake_kube, case, canary)
    assert steps[0] == (100, 0, False)
    assert (100, 0, True) in steps  # the first iteration mirrors
    assert steps[-2:] == [(0, 100, False), (100, 0, False)]  # all traffic to the canary, then back after promotion


async def test_blue_green_without_a_mesh_updates_the_primary_in_place(
    fake_kube: FakeKube, time_skipping_env: WorkflowEnvironment
) -> None:
    fake_kube.seed(podinfo_deployment(NS))
    canary = release_canary("kubernetes", {}, iterations=2)

    result = await release(fake_kube, time_skipping_env, canary)

    assert result.phase == "Succeeded", result
    assert primary_image(fake_kube) == IMAGE_V2
    apex = fake_kube.get("v1", "Service", "podinfo", NS)
    assert apex is not None and apex["spec"]["selector"] == {"app": "podinfo-primary"}


async def test_a_failing_check_rolls_back_to_the_primary(
    fake_kube: FakeKube, time_skipping_env: WorkflowEnvironment
) -> None:
    case = CASES["istio"]
    seed_platform(fake_kube, case)
    with hook_server() as hooks:
        hooks.answer("smoke", 500)
        canary = release_canary(
            case.provider,
            case.service,
            stepWeight=25,
            maxWeight=50,
            threshold=1,
            webhooks=[webhook("smoke", "rollout", hooks.url("smoke"))],
        )
        with pytest.raises(WorkflowFailureError):
            await release(fake_kube, time_skipping_env, canary)

    steps = traffic_steps(fake_kube, case, canary)
    assert steps[0] == (100, 0, False) and steps[-1] == (100, 0, False)
    assert final_step(fake_kube, case, canary) == (100, 0, False)
    assert primary_image(fake_kube) == IMAGE_V1
    target = fake_kube.get("apps/v1", "Deployment", "podinfo", NS)
    assert target is not None and target["spec"]["replicas"] == 0


async def test_session_affinity_cookies_through_a_whole_istio_release(
    fake_kube: FakeKube, time_skipping_env: WorkflowEnvironment
) -> None:
    case = CASES["istio"]
    seed_platform(fake_kube, case)
    canary = release_canary(
        case.provider, case.service, stepWeight=25, maxWeight=50, sessionAffinity={"cookieName": "flagger-cookie"}
    )

    result = await release(fake_kube, time_skipping_env, canary)

    assert result.phase == "Succeeded", result
    assert traffic_steps(fake_kube, case, canary) == WEIGHTED_STEPS
    written = [
        request.body["spec"]["http"]
        for request in fake_kube.requests
        if request.method == "PUT" and request.path.endswith(case.path) and request.status == 200
    ]
    sticky_cookies = {
        route["match"][0]["headers"]["Cookie"]["regex"] for http in written for route in http if "match" in route
    }
    assert len(sticky_cookies) == 1  # one cookie for the whole run
    [sticky_regex] = sticky_cookies
    cookie_value = sticky_regex.removeprefix(".*flagger-cookie.*").removesuffix(".*")
    assert len(cookie_value) == 10 and cookie_value.isalpha()
    final = final_step(fake_kube, case, canary)
    assert final == (100, 0, False)
    found = fake_kube.get(case.api_version, case.kind, case.name, NS)
    assert found is not None
    expiring = found["spec"]["http"][0]
    assert expiring["headers"]["response"]["add"]["Set-Cookie"] == f"flagger-cookie={cookie_value}; Max-Age=-1"
