"""The Istio router against fakekube: DestinationRules, the VirtualService, every traffic step, takeover and revert."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, Routes
from activities.routers.istio import IstioRouter
from activities.routers.kube_objects import ORIGINAL_CONFIGURATION_ANNOTATION
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube
from tests.kube.router_fixtures import (
    STEPS,
    STICKY,
    STICKY_ENDED,
    docs_canary,
    routes,
    target_of,
    with_analysis,
    with_service,
)

ISTIO = "networking.istio.io/v1beta1"
KUBECTL = "kubectl.kubernetes.io/last-applied-configuration"


def _virtual_service(fake: FakeKube) -> dict[str, Any]:
    found = fake.get(ISTIO, "VirtualService", "podinfo", "test")
    assert found is not None, "VirtualService test/podinfo does not exist"
    return found


def _resource_versions(fake: FakeKube) -> list[str]:
    """The resourceVersions of the VirtualService and both DestinationRules."""
    rules = [fake.get(ISTIO, "DestinationRule", host, "test") for host in ("podinfo-primary", "podinfo-canary")]
    return [obj["metadata"]["resourceVersion"] for obj in (_virtual_service(fake), *rules) if obj is not None]


def _weights(route: dict[str, Any]) -> dict[str, int]:
    return {item["destination"]["host"]: item["weight"] for item in route["route"]}


@pytest.fixture
def canary() -> Canary:
    return docs_canary("istio-progressive-delivery-1", "istio")


@pytest.fixture
def router(fake_kube: FakeKube) -> IstioRouter:
    return IstioRouter(fake_kube.api_client())


async def test_reconcile_creates_destination_rules_and_the_virtual_service(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    stored_canary = fake_kube.seed(canary.model_dump(by_alias=True, exclude_none=True))

    await router.reconcile(target_of(canary))

    for host in ("podinfo-primary", "podinfo-canary"):
        rule = fake_kube.get(ISTIO, "DestinationRule", host, "test")
        assert rule is not None
        assert rule["spec"] == {"host": host, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
        assert rule["metadata"]["ownerReferences"][0]["uid"] == stored_canary["metadata"]["uid"]
    service = _virtual_service(fake_kube)
    assert service["spec"]["hosts"] == ["app.example.com", "podinfo"]
    assert service["spec"]["gateways"] == ["istio-system/public-gateway"]
    [http] = service["spec"]["http"]
    assert _weights(http) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert http["retries"] == {
        "attempts": 3,
        "perTryTimeout": "1s",
        "retryOn": "gateway-error,connect-failure,refused-stream",
    }
    assert service["metadata"]["ownerReferences"][0]["name"] == "podinfo"


async def test_a_mesh_only_canary_gets_the_mesh_gateway(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(with_service(canary, hosts=[], gateways=[])))

    spec = _virtual_service(fake_kube)["spec"]
    assert (spec["hosts"], spec["gateways"]) == (["podinfo"], ["mesh"])


async def test_a_second_reconcile_writes_nothing_even_mid_release(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    await router.set_routes(routes(canary, 60, 40))
    versions = _resource_versions(fake_kube)

    await router.reconcile(target_of(canary))

    assert _resource_versions(fake_kube) == versions
    assert _weights(_virtual_service(fake_kube)["spec"]["http"][0]) == {"podinfo-primary": 60, "podinfo-canary": 40}


async def test_set_routes_writes_absolute_weights_that_get_routes_reads_back(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))

    for primary, canary_weight in STEPS:
        await router.set_routes(routes(canary, primary, canary_weight))

        [http] = _virtual_service(fake_kube)["spec"]["http"]
        assert _weights(http) == {"podinfo-primary": primary, "podinfo-canary": canary_weight}
        assert await router.get_routes(target_of(canary)) == Routes(primary_weight=primary, canary_weight=canary_weight)


async def test_mirroring_sets_mirror_and_percentage(fake_kube: FakeKube, router: IstioRouter, canary: Canary) -> None:
    mirrored = with_analysis(canary, mirror=True, mirrorWeight=50)
    await router.reconcile(target_of(mirrored))

    await router.set_routes(routes(mirrored, 100, 0, mirrored=True))

    [http] = _virtual_service(fake_kube)["spec"]["http"]
    assert http["mirror"] == {"host": "podinfo-canary"}
    assert http["mirrorPercentage"] == {"value": 50}
    assert await router.get_routes(target_of(mirrored)) == Routes(primary_weight=100, canary_weight=0, mirrored=True)

    await router.set_routes(routes(mirrored, 90, 10))

    assert "mirror" not in _virtual_service(fake_kube)["spec"]["http"][0]


async def test_ab_testing_routes_matching_requests_and_keeps_the_rest_on_the_primary(
    fake_kube: FakeKube, router: IstioRouter
) -> None:
    canary = docs_canary("istio-ab-testing-1", "istio")
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 0, 100))

    matching, rest = _virtual_service(fake_kube)["spec"]["http"]
    assert matching["match"] == [
        {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
        {"headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}},
    ]
    assert _weights(matching) == {"podinfo-primary": 0, "podinfo-canary": 100}
    assert "match" not in rest
    assert [item["destination"]["host"] for item in rest["route"]] == ["podinfo-primary"]
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=0, canary_weight=100)


async def test_session_affinity_pins_cookie_holders_to_the_canary(fake_kube: FakeKube, router: IstioRouter) -> None:
    canary = docs_canary("istio-progressive-delivery-2", "istio")
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 90, 10, sticky=STICKY))

    sticky_route, weighted = _virtual_service(fake_kube)["spec"]["http"]
    assert sticky_route["match"] == [{"headers": {"Cookie": {"regex": ".*flagger-cookie.*LpGFBvQkTz.*"}}}]
    assert _weights(sticky_route) == {"podinfo-primary": 0, "podinfo-canary": 100}
    canary_destination = next(item for item in weighted["route"] if item["destination"]["host"] == "podinfo-canary")
    assert canary_destination["headers"] == {
        "response": {"add": {"Set-Cookie": "flagger-cookie=LpGFBvQkTz; Max-Age=21600"}}
    }
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=90, canary_weight=10)
    version = _virtual_service(fake_kube)["metadata"]["resourceVersion"]
    await router.reconcile(target_of(canary))
    assert _virtual_service(fake_kube)["metadata"]["resourceVersion"] == version

    await router.set_routes(routes(canary, 100, 0, sticky=STICKY_ENDED))

    expiring, weighted = _virtual_service(fake_kube)["spec"]["http"]
    assert expiring["headers"]["response"]["add"]["Set-Cookie"] == "flagger-cookie=LpGFBvQkTz; Max-Age=-1"
    assert _weights(weighted) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=100, canary_weight=0)


async def test_taking_over_a_virtual_service_keeps_its_spec_for_finalize(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    original_spec = {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]}
    fake_kube.seed(
        {
            "apiVersion": ISTIO,
            "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": {"team": "web"}},
            "spec": original_spec,
        }
    )

    await router.reconcile(target_of(canary))

    service = _virtual_service(fake_kube)
    assert json.loads(service["metadata"]["annotations"][ORIGINAL_CONFIGURATION_ANNOTATION]) == original_spec
    assert "team" not in service["metadata"]["annotations"]  # Flagger keeps only its own and kubectl's
    assert _weights(service["spec"]["http"][0]) == {"podinfo-primary": 100, "podinfo-canary": 0}

    await router.finalize(target_of(canary))

    assert _virtual_service(fake_kube)["spec"] == original_spec


async def test_delegation_rejects_hosts(router: IstioRouter, canary: Canary) -> None:
    with pytest.raises(ApplicationError) as raised:
        await router.reconcile(target_of(with_service(canary, delegation=True)))

    assert raised.value.type == ERR_INVALID_SPEC


async def test_delegate_virtual_service_has_no_hosts_or_gateways(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    delegate = with_service(canary, hosts=[], gateways=[], delegation=True)

    await router.reconcile(target_of(delegate))

    spec = _virtual_service(fake_kube)["spec"]
    assert spec.get("hosts") == []
    assert "gateways" not in spec


async def test_tcp_services_get_tcp_routes(fake_kube: FakeKube, router: IstioRouter, canary: Canary) -> None:
    tcp = with_service(canary, appProtocol="tcp")
    await router.reconcile(target_of(tcp))

    await router.set_routes(routes(tcp, 80, 20))

    spec = _virtual_service(fake_kube)["spec"]
    assert "http" not in spec
    assert _weights(spec["tcp"][0]) == {"podinfo-primary": 80, "podinfo-canary": 20}
    assert await router.get_routes(target_of(tcp)) == Routes(primary_weight=80, canary_weight=20)


async def test_a_conflict_in_the_middle_of_a_write_is_retried(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    fake_kube.inject_fault("PUT", r"/virtualservices/podinfo$", status=409, reason="Conflict", times=3)

    await router.set_routes(routes(canary, 30, 70))

    assert _weights(_virtual_service(fake_kube)["spec"]["http"][0]) == {"podinfo-primary": 30, "podinfo-canary": 70}


async def test_finalize_restores_the_spec_kubectl_last_applied(
    fake_kube: FakeKube, router: IstioRouter, canary: Canary
) -> None:
    applied: dict[str, Any] = {
        "apiVersion": ISTIO,
        "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]},
    }
    fake_kube.seed({**applied, "metadata": {**applied["metadata"], "annotations": {KUBECTL: json.dumps(applied)}}})

    await router.reconcile(target_of(canary))
    taken_over = _virtual_service(fake_kube)
    assert KUBECTL in taken_over["metadata"]["annotations"]
    assert ORIGINAL_CONFIGURATION_ANNOTATION not in taken_over["metadata"]["annotations"]

    await router.finalize(target_of(canary))

    assert _virtual_service(fake_kube)["spec"] == applied["spec"]
