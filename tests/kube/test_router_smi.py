"""The SMI router against fakekube: the TrafficSplit version per provider, weights, and idempotent reconcile."""

from __future__ import annotations

from typing import Any

import pytest

from activities.contracts import Routes
from activities.routers.smi import SmiRouter
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube
from tests.kube.router_fixtures import STEPS, router_canary, routes, target_of, with_service

SPLIT = "split.smi-spec.io"


def _split(fake: FakeKube, version: str) -> dict[str, Any]:
    found = fake.get(f"{SPLIT}/{version}", "TrafficSplit", "podinfo", "test")
    assert found is not None, f"TrafficSplit {version} test/podinfo does not exist"
    return found


@pytest.fixture
def router(fake_kube: FakeKube) -> SmiRouter:
    return SmiRouter(fake_kube.api_client())


@pytest.mark.parametrize(
    ("canary_file", "version", "written_weights"),
    [
        ("canary-linkerd", "v1alpha1", ["10", "90"]),  # quantities
        ("canary-osm", "v1alpha2", [10, 90]),
        ("canary-smi-v1alpha3-istio", "v1alpha3", [10, 90]),
    ],
)
async def test_each_provider_writes_its_traffic_split_version(
    fake_kube: FakeKube, router: SmiRouter, canary_file: str, version: str, written_weights: list[Any]
) -> None:
    canary = router_canary("smi", canary_file)
    await router.reconcile(target_of(canary))

    await router.set_routes(routes(canary, 90, 10))

    split = _split(fake_kube, version)
    assert [backend["service"] for backend in split["spec"]["backends"]] == ["podinfo-canary", "podinfo-primary"]
    assert [backend["weight"] for backend in split["spec"]["backends"]] == written_weights
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=90, canary_weight=10)


async def test_reconcile_creates_the_split_owned_by_the_canary(fake_kube: FakeKube, router: SmiRouter) -> None:
    canary = router_canary("smi", "canary-linkerd")
    stored_canary = fake_kube.seed(canary.model_dump(by_alias=True, exclude_none=True))

    await router.reconcile(target_of(canary))

    split = _split(fake_kube, "v1alpha1")
    assert split["spec"] == {
        "service": "podinfo",
        "backends": [{"service": "podinfo-canary", "weight": "0"}, {"service": "podinfo-primary", "weight": "100"}],
    }
    assert split["metadata"]["ownerReferences"][0]["uid"] == stored_canary["metadata"]["uid"]


async def test_istio_gateways_are_recorded_on_the_split(fake_kube: FakeKube, router: SmiRouter) -> None:
    canary = router_canary("smi", "canary-smi-v1alpha3-istio")

    await router.reconcile(target_of(canary))

    split = _split(fake_kube, "v1alpha3")
    assert split["spec"]["service"] == "podinfo.test.svc.cluster.local"
    assert split["metadata"]["annotations"] == {
        "VirtualService.v1alpha3.networking.istio.io/spec.gateways": '["istio-system/public-gateway","mesh"]'
    }


async def test_set_routes_writes_absolute_weights_that_get_routes_reads_back(router: SmiRouter) -> None:
    canary = router_canary("smi", "canary-osm")
    await router.reconcile(target_of(canary))

    for primary, canary_weight in STEPS:
        await router.set_routes(routes(canary, primary, canary_weight))

        assert await router.get_routes(target_of(canary)) == Routes(primary_weight=primary, canary_weight=canary_weight)


async def test_reconcile_keeps_weights_and_rewrites_only_a_changed_service(
    fake_kube: FakeKube, router: SmiRouter
) -> None:
    canary = router_canary("smi", "canary-osm")
    await router.reconcile(target_of(canary))
    await router.set_routes(routes(canary, 70, 30))
    version = _split(fake_kube, "v1alpha2")["metadata"]["resourceVersion"]

    await router.reconcile(target_of(canary))

    assert _split(fake_kube, "v1alpha2")["metadata"]["resourceVersion"] == version
    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=70, canary_weight=30)

    await router.reconcile(target_of(with_service(canary, hosts=["podinfo.test"])))

    assert _split(fake_kube, "v1alpha2")["spec"]["service"] == "podinfo.test"


async def test_a_conflict_in_the_middle_of_a_write_is_retried(fake_kube: FakeKube, router: SmiRouter) -> None:
    canary: Canary = router_canary("smi", "canary-linkerd")
    await router.reconcile(target_of(canary))
    fake_kube.inject_fault("PUT", r"/trafficsplits/podinfo$", status=409, reason="Conflict", times=2)

    await router.set_routes(routes(canary, 40, 60))

    assert await router.get_routes(target_of(canary)) == Routes(primary_weight=40, canary_weight=60)
