"""The NGINX router against fakekube: the canary Ingress copy, its canary annotations, A/B by header and cookie."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, ERR_NOT_FOUND, Routes
from activities.routers.nginx import NginxRouter
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube
from tests.kube.router_fixtures import ROUTER_DATA, STEPS, docs_canary, routes, target_of, yaml_object

INGRESS = "networking.k8s.io/v1"
PREFIX = "nginx.ingress.kubernetes.io"


def _canary_ingress(fake: FakeKube) -> dict[str, Any]:
    found = fake.get(INGRESS, "Ingress", "podinfo-canary", "test")
    assert found is not None, "Ingress test/podinfo-canary does not exist"
    return found


def _canary_annotations(fake: FakeKube) -> dict[str, str]:
    annotations: dict[str, str] = _canary_ingress(fake)["metadata"]["annotations"]
    return {key: value for key, value in annotations.items() if key.startswith(f"{PREFIX}/canary")}


@pytest.fixture
def ingress(fake_kube: FakeKube) -> dict[str, Any]:
    return fake_kube.seed(yaml_object(ROUTER_DATA / "nginx" / "ingress-podinfo.yaml"))


@pytest.fixture
def canary() -> Canary:
    return docs_canary("nginx-progressive-delivery-1")


@pytest.fixture
def router(fake_kube: FakeKube) -> NginxRouter:
    return NginxRouter(fake_kube.api_client())


async def test_reconcile_copies_the_ingress_to_the_canary_service(
    fake_kube: FakeKube, router: NginxRouter, canary: Canary, ingress: dict[str, Any]
) -> None:
    stored_canary = fake_kube.seed(canary.model_dump(by_alias=True, exclude_none=True))

    await router.reconcile(target_of(canary))

    copy = _canary_ingress(fake_kube)
    backend = copy["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "podinfo-canary", "port": {"number": 80}}}
    assert copy["spec"]["rules"][0]["host"] == "app.example.com"
    assert copy["metadata"]["labels"] == {"app": "podinfo"}
    assert copy["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "nginx"
    assert _canary_annotations(fake_kube) == {f"{PREFIX}/canary": "true", f"{PREFIX}/canary-weight": "0"}
    assert copy["metadata"]["ownerReferences"][0]["uid"] == stored_canary["metadata"]["uid"]
    original = fake_kube.get(INGRESS, "Ingress", "podinfo", "test")
    assert original is not None and original["metadata"]["resourceVersion"] == ingress["metadata"]["resourceVersion"]


@pytest.mark.usefixtures("ingress")
async def test_set_routes_writes_the_canary_weight_that_get_routes_reads_back(
    fake_kube: FakeKube, router: NginxRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))

    for primary, canary_weight in STEPS:
        await router.set_routes(routes(canary, primary, canary_weight))

        expected = {f"{PREFIX}/canary": "true", f"{PREFIX}/canary-weight": str(canary_weight)}
        assert _canary_annotations(fake_kube) == expected
        assert await router.get_routes(target_of(canary)) == Routes(primary_weight=primary, canary_weight=canary_weight)


@pytest.mark.usefixtures("ingress")
async def test_ab_testing_routes_by_header_and_cookie(fake_kube: FakeKube, router: NginxRouter) -> None:
    canary = docs_canary("linkerd-progressive-delivery-3")  # nginx, x-canary: always / cookie canary
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 0, 100))

    assert _canary_annotations(fake_kube) == {
        f"{PREFIX}/canary": "true",
        f"{PREFIX}/canary-weight": "0",
        f"{PREFIX}/canary-by-header": "x-canary",
        f"{PREFIX}/canary-by-header-value": "always",
        f"{PREFIX}/canary-by-cookie": "canary",
    }
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=0, canary_weight=100)

    await router.set_routes(routes(canary, 100, 0))

    assert _canary_annotations(fake_kube) == {f"{PREFIX}/canary": "true", f"{PREFIX}/canary-weight": "0"}
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=100, canary_weight=0)


@pytest.mark.usefixtures("ingress")
async def test_reconcile_follows_the_ingress_and_keeps_the_weight(
    fake_kube: FakeKube, router: NginxRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    await router.set_routes(routes(canary, 80, 20))
    version = _canary_ingress(fake_kube)["metadata"]["resourceVersion"]

    await router.reconcile(target_of(canary))
    assert _canary_ingress(fake_kube)["metadata"]["resourceVersion"] == version

    changed = fake_kube.get(INGRESS, "Ingress", "podinfo", "test")
    assert changed is not None
    changed["spec"]["rules"][0]["host"] = "podinfo.example.org"
    fake_kube.seed(changed)
    await router.reconcile(target_of(canary))

    assert _canary_ingress(fake_kube)["spec"]["rules"][0]["host"] == "podinfo.example.org"
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=80, canary_weight=20)


@pytest.mark.usefixtures("ingress")
async def test_a_conflict_in_the_middle_of_a_write_is_retried(
    fake_kube: FakeKube, router: NginxRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    fake_kube.inject_fault("PUT", r"/ingresses/podinfo-canary$", status=409, reason="Conflict", times=2)

    await router.set_routes(routes(canary, 75, 25))

    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=75, canary_weight=25)


async def test_a_missing_ingress_is_not_found(router: NginxRouter, canary: Canary) -> None:
    with pytest.raises(ApplicationError) as raised:
        await router.reconcile(target_of(canary))

    assert raised.value.type == ERR_NOT_FOUND


async def test_an_ingress_not_routing_to_the_apex_service_is_an_invalid_spec(
    fake_kube: FakeKube, router: NginxRouter, canary: Canary
) -> None:
    other = yaml_object(ROUTER_DATA / "nginx" / "ingress-podinfo.yaml")
    other["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "frontend"
    fake_kube.seed(other)

    with pytest.raises(ApplicationError) as raised:
        await router.reconcile(target_of(canary))

    assert raised.value.type == ERR_INVALID_SPEC
