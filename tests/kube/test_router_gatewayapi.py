"""The Gateway API router against fakekube: the HTTPRoute it creates, every traffic step, and what it leaves alone."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, Routes
from activities.routers.gatewayapi import GatewayAPIRouter
from activities.routers.kube_objects import ERR_ROUTES_NOT_READY
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

V1 = "gateway.networking.k8s.io/v1"
V1BETA1 = "gateway.networking.k8s.io/v1beta1"


def _route(fake: FakeKube, api_version: str = V1) -> dict[str, Any]:
    found = fake.get(api_version, "HTTPRoute", "podinfo", "test")
    assert found is not None, "HTTPRoute test/podinfo does not exist"
    return found


def _weights(rule: dict[str, Any]) -> dict[str, int]:
    return {backend["name"]: backend["weight"] for backend in rule["backendRefs"]}


@pytest.fixture
def canary() -> Canary:
    return docs_canary("gatewayapi-progressive-delivery-2", "gatewayapi:v1")


@pytest.fixture
def router(fake_kube: FakeKube) -> GatewayAPIRouter:
    return GatewayAPIRouter(fake_kube.api_client())


async def test_reconcile_creates_the_route_owned_by_the_canary(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    stored_canary = fake_kube.seed(canary.model_dump(by_alias=True, exclude_none=True))

    await router.reconcile(target_of(canary))

    route = _route(fake_kube)
    assert route["spec"]["parentRefs"] == [{"name": "gateway", "namespace": "istio-ingress"}]
    assert route["spec"]["hostnames"] == ["www.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert _weights(rule) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert {backend["port"] for backend in rule["backendRefs"]} == {9898}
    assert route["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"] == "disabled"
    [owner] = route["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Canary",
        "podinfo",
        stored_canary["metadata"]["uid"],
        True,
    )


async def test_reconcile_without_a_canary_object_creates_an_unowned_route(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))

    assert "ownerReferences" not in _route(fake_kube)["metadata"]


async def test_a_second_reconcile_writes_nothing_even_mid_release(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    await router.set_routes(routes(canary, 70, 30))
    version = _route(fake_kube)["metadata"]["resourceVersion"]

    await router.reconcile(target_of(canary))

    route = _route(fake_kube)
    assert route["metadata"]["resourceVersion"] == version
    assert _weights(route["spec"]["rules"][0]) == {"podinfo-primary": 70, "podinfo-canary": 30}


async def test_set_routes_writes_absolute_weights_that_get_routes_reads_back(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))

    for primary, canary_weight in STEPS:
        await router.set_routes(routes(canary, primary, canary_weight))
        await router.set_routes(routes(canary, primary, canary_weight))  # a retried activity changes nothing

        assert _weights(_route(fake_kube)["spec"]["rules"][0]) == {
            "podinfo-primary": primary,
            "podinfo-canary": canary_weight,
        }
        assert await router.get_routes(target_of(canary)) == Routes(primary_weight=primary, canary_weight=canary_weight)


async def test_blue_green_mirroring_adds_a_mirror_filter_to_the_canary(
    fake_kube: FakeKube, router: GatewayAPIRouter
) -> None:
    canary = docs_canary("gatewayapi-progressive-delivery-5", "gatewayapi:v1")
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 100, 0, mirrored=True))

    [rule] = _route(fake_kube)["spec"]["rules"]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}},
        }
    ]
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=100, canary_weight=0, mirrored=True)
    version = _route(fake_kube)["metadata"]["resourceVersion"]
    await router.reconcile(target_of(canary))  # the mirror is a traffic step, not drift
    assert _route(fake_kube)["metadata"]["resourceVersion"] == version

    await router.set_routes(routes(canary, 0, 100))
    assert "filters" not in _route(fake_kube)["spec"]["rules"][0]
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=0, canary_weight=100)


async def test_mirroring_is_ignored_for_a_weighted_canary(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 100, 0, mirrored=True))

    assert "filters" not in _route(fake_kube)["spec"]["rules"][0]


async def test_ab_testing_routes_matching_requests_and_keeps_the_rest_on_the_primary(
    fake_kube: FakeKube, router: GatewayAPIRouter
) -> None:
    canary = docs_canary("gatewayapi-progressive-delivery-3", "gatewayapi:v1")
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 0, 100))

    matching, rest = _route(fake_kube)["spec"]["rules"]
    assert [match["headers"] for match in matching["matches"]] == [
        [{"type": "RegularExpression", "name": "user-agent", "value": ".*Firefox.*"}],
        [{"type": "RegularExpression", "name": "cookie", "value": "^(.*?;)?(type=insider)(;.*)?$"}],
    ]
    assert _weights(matching) == {"podinfo-primary": 0, "podinfo-canary": 100}
    assert rest["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert _weights(rest) == {"podinfo-primary": 100}
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=0, canary_weight=100)


async def test_session_affinity_pins_cookie_holders_to_the_canary(
    fake_kube: FakeKube, router: GatewayAPIRouter
) -> None:
    canary = docs_canary("gatewayapi-progressive-delivery-4", "gatewayapi:v1")
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 90, 10, sticky=STICKY))

    sticky_rule, weighted = _route(fake_kube)["spec"]["rules"]
    assert sticky_rule["matches"] == [
        {"headers": [{"type": "RegularExpression", "name": "Cookie", "value": ".*flagger-cookie.*LpGFBvQkTz.*"}]}
    ]
    assert _weights(sticky_rule) == {"podinfo-primary": 0, "podinfo-canary": 100}
    assert _weights(weighted) == {"podinfo-primary": 90, "podinfo-canary": 10}
    canary_backend = next(b for b in weighted["backendRefs"] if b["name"] == "podinfo-canary")
    assert canary_backend["filters"][0]["responseHeaderModifier"]["add"] == [
        {"name": "Set-Cookie", "value": "flagger-cookie=LpGFBvQkTz; Max-Age=21600"}
    ]
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=90, canary_weight=10)
    version = _route(fake_kube)["metadata"]["resourceVersion"]
    await router.reconcile(target_of(canary))
    assert _route(fake_kube)["metadata"]["resourceVersion"] == version

    await router.set_routes(routes(canary, 100, 0, sticky=STICKY_ENDED))

    expiring, weighted = _route(fake_kube)["spec"]["rules"]
    assert expiring["filters"][0]["responseHeaderModifier"]["add"] == [
        {"name": "Set-Cookie", "value": "flagger-cookie=LpGFBvQkTz; Max-Age=-1"}
    ]
    assert _weights(weighted) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=100, canary_weight=0)


async def test_reconcile_keeps_foreign_annotations_and_applies_apex_metadata(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    route = _route(fake_kube)
    route["metadata"]["annotations"]["gateway.example.com/assigned-address"] = "10.0.0.7"
    route["metadata"]["labels"] = {"added-by": "someone"}
    fake_kube.seed(route)
    relabelled = with_service(canary, apex={"labels": {"team": "web"}, "annotations": {"owner": "web-team"}})

    await router.reconcile(target_of(relabelled))

    metadata = _route(fake_kube)["metadata"]
    assert metadata["annotations"]["gateway.example.com/assigned-address"] == "10.0.0.7"
    assert metadata["annotations"]["owner"] == "web-team"
    assert metadata["labels"] == {"team": "web"}


async def test_reconcile_rewrites_a_changed_spec(fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary) -> None:
    await router.reconcile(target_of(canary))

    await router.reconcile(target_of(with_service(canary, hosts=["podinfo.example.org"], timeout="15s")))

    route = _route(fake_kube)
    assert route["spec"]["hostnames"] == ["podinfo.example.org"]
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "15s"}


async def test_v1beta1_provider_writes_a_v1beta1_route(fake_kube: FakeKube, router: GatewayAPIRouter) -> None:
    canary = docs_canary("gatewayapi-progressive-delivery-2", "gatewayapi:v1beta1")

    await router.reconcile(target_of(canary))
    await router.set_routes(routes(canary, 80, 20))

    route_calls = [request for request in fake_kube.requests if "/httproutes" in request.path]
    assert {(request.method, request.path.split("/")[3]) for request in route_calls} == {
        ("GET", "v1beta1"),
        ("POST", "v1beta1"),
        ("PUT", "v1beta1"),
    }
    assert _route(fake_kube, V1BETA1)["apiVersion"] == V1BETA1
    assert _weights(_route(fake_kube, V1BETA1)["spec"]["rules"][0]) == {"podinfo-primary": 80, "podinfo-canary": 20}
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=80, canary_weight=20)


async def test_a_conflict_in_the_middle_of_a_write_is_retried(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    fake_kube.inject_fault("PUT", r"/httproutes/podinfo$", status=409, reason="Conflict", times=2)

    await router.set_routes(routes(canary, 60, 40))

    assert _weights(_route(fake_kube)["spec"]["rules"][0]) == {"podinfo-primary": 60, "podinfo-canary": 40}


async def test_get_routes_waits_until_every_gateway_accepted_the_route(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    route = _route(fake_kube)
    parent = route["spec"]["parentRefs"][0]
    route["status"] = {
        "parents": [
            {
                "parentRef": parent,
                "controllerName": "example.com/gateway",
                "conditions": [{"type": "Accepted", "status": "False", "observedGeneration": 1, "reason": "Pending"}],
            }
        ]
    }
    fake_kube.seed(route)

    with pytest.raises(ApplicationError) as raised:
        await router.get_routes(target_of(canary))

    assert raised.value.type == ERR_ROUTES_NOT_READY
    assert not raised.value.non_retryable


async def test_a_route_without_gateway_refs_is_an_invalid_spec(router: GatewayAPIRouter) -> None:
    canary = docs_canary("gatewayapi-progressive-delivery-2", "gatewayapi:v1")
    canary = with_service(canary, gatewayRefs=[])

    with pytest.raises(ApplicationError) as raised:
        await router.reconcile(target_of(canary))

    assert raised.value.type == ERR_INVALID_SPEC
    assert raised.value.non_retryable


async def test_a_header_prefix_match_the_gateway_api_cannot_express_is_an_invalid_spec(
    router: GatewayAPIRouter,
) -> None:
    canary = docs_canary("gatewayapi-progressive-delivery-3", "gatewayapi:v1")
    canary = with_analysis(canary, match=[{"headers": {"x-canary": {"prefix": "ins"}}}])

    with pytest.raises(ApplicationError) as raised:
        await router.reconcile(target_of(canary))

    assert raised.value.type == ERR_INVALID_SPEC


async def test_a_conflict_while_reconciling_a_changed_spec_is_retried(
    fake_kube: FakeKube, router: GatewayAPIRouter, canary: Canary
) -> None:
    await router.reconcile(target_of(canary))
    fake_kube.inject_fault("PUT", r"/httproutes/podinfo$", status=409, reason="Conflict", times=1)

    await router.reconcile(target_of(with_service(canary, hosts=["podinfo.example.org"])))

    assert _route(fake_kube)["spec"]["hostnames"] == ["podinfo.example.org"]
