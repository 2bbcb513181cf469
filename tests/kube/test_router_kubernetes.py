"""The `kubernetes` provider routes nothing (Flagger's NopRouter), and the factory maps every provider key."""

from __future__ import annotations

from activities.contracts import Routes
from activities.routers.base import router_key
from activities.routers.gatewayapi import GatewayAPIRouter
from activities.routers.istio import IstioRouter
from activities.routers.kube_factory import kubernetes_routers
from activities.routers.kubernetes import KubernetesRouter
from activities.routers.nginx import NginxRouter
from activities.routers.smi import SmiRouter
from tests.fakekube.fake import FakeKube
from tests.kube.router_fixtures import docs_canary, routes, target_of


async def test_blue_green_without_a_mesh_writes_nothing(fake_kube: FakeKube) -> None:
    canary = docs_canary("kubernetes-blue-green-0")
    router = KubernetesRouter(fake_kube.api_client())
    requests_before = len(fake_kube.requests)

    await router.reconcile(target_of(canary))
    await router.set_routes(routes(canary, 0, 100))

    assert len(fake_kube.requests) == requests_before
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=100, canary_weight=0)


def test_every_provider_of_these_routers_has_its_router(fake_kube: FakeKube) -> None:
    routers = kubernetes_routers(fake_kube.api_client())
    expected = {
        "istio": IstioRouter,
        "linkerd": SmiRouter,
        "osm": SmiRouter,
        "smi:v1alpha1": SmiRouter,
        "smi:v1alpha2:linkerd": SmiRouter,
        "smi:v1alpha3:istio": SmiRouter,
        "nginx": NginxRouter,
        "gatewayapi:v1": GatewayAPIRouter,
        "gatewayapi:v1beta1": GatewayAPIRouter,
        "kubernetes": KubernetesRouter,
        None: KubernetesRouter,
    }

    assert {provider: type(routers[router_key(provider)]) for provider in expected} == expected
