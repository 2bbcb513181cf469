"""The routing objects each router generates for Flagger's documented podinfo canaries, against reviewed goldens.

Goldens live in tests/data/routers/<router>/<case>.golden.yaml; each holds the named objects (or specs) of one
case. They were checked by hand against Flagger's pkg/router sources and tests (object names, field names,
backend order, weights, matches, cookie rules). After an intended change, regenerate them with
`CANARYFLOW_UPDATE_GOLDENS=1 uv run pytest tests/kube/test_router_goldens.py` and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from activities.routers import gatewayapi, istio, nginx, smi
from canaryflow.spec import Canary
from tests.kube.router_fixtures import (
    ROUTER_DATA,
    STICKY,
    STICKY_ENDED,
    STICKY_WITH_PRIMARY,
    docs_canary,
    router_canary,
    target_of,
    with_analysis,
    with_service,
    yaml_object,
)

UPDATE = os.environ.get("CANARYFLOW_UPDATE_GOLDENS") == "1"

Case = Callable[[], dict[str, Any]]


def _gateway(name: str, provider: str = "gatewayapi:v1") -> Canary:
    return docs_canary(name, provider)


def gatewayapi_canary() -> dict[str, Any]:
    canary = _gateway("gatewayapi-progressive-delivery-2")
    return {
        "reconcile": gatewayapi.http_route_object(canary),
        "set_routes 90/10": gatewayapi.http_route_spec(canary, 90, 10),
        "set_routes 50/50": gatewayapi.http_route_spec(canary, 50, 50),
    }


def gatewayapi_v1beta1_linkerd() -> dict[str, Any]:
    canary = _gateway("linkerd-progressive-delivery-0", "gatewayapi:v1beta1")
    return {
        "reconcile": gatewayapi.http_route_object(canary),
        "set_routes 95/5": gatewayapi.http_route_spec(canary, 95, 5),
    }


def gatewayapi_options() -> dict[str, Any]:
    """Timeouts, header filters, rewrite, CORS (v1 only) and a service match; v1beta1 drops timeouts and CORS."""
    base = _gateway("gatewayapi-progressive-delivery-2")
    options: dict[str, Any] = {
        "timeout": "30s",
        "backendTimeout": "10s",
        "match": [{"uri": {"prefix": "/api"}, "method": {"exact": "GET"}}],
        "rewrite": {"uri": "/v2", "type": "ReplacePrefixMatch"},
        "headers": {
            "request": {"add": {"x-b": "2", "x-a": "1"}, "remove": ["x-debug"]},
            "response": {"set": {"cache-control": "no-store"}},
        },
        "corsPolicy": {"allowOrigin": ["https://example.com"], "allowMethods": ["GET"], "maxAge": "24h"},
        "apex": {"labels": {"team": "web"}, "annotations": {"owner": "web-team"}},
    }
    v1 = with_service(base, **options)
    v1beta1 = with_service(_gateway("gatewayapi-progressive-delivery-2", "gatewayapi:v1beta1"), **options)
    return {
        "v1 reconcile": gatewayapi.http_route_object(v1),
        "v1beta1 reconcile": gatewayapi.http_route_object(v1beta1),
    }


def gatewayapi_ab() -> dict[str, Any]:
    canary = _gateway("gatewayapi-progressive-delivery-3")
    return {
        "reconcile": gatewayapi.http_route_object(canary),
        "set_routes 0/100": gatewayapi.http_route_spec(canary, 0, 100),
    }


def gatewayapi_session_affinity() -> dict[str, Any]:
    canary = _gateway("gatewayapi-progressive-delivery-4")
    with_primary = with_analysis(
        canary,
        sessionAffinity={
            "cookieName": "flagger-cookie",
            "primaryCookieName": "flagger-primary-cookie",
            "maxAge": 21600,
            "path": "/",
            "secure": True,
        },
    )
    return {
        "set_routes 90/10": gatewayapi.http_route_spec(canary, 90, 10, False, STICKY),
        "set_routes 90/10 with a primary cookie": gatewayapi.http_route_spec(
            with_primary, 90, 10, False, STICKY_WITH_PRIMARY
        ),
        "set_routes 100/0 after the run": gatewayapi.http_route_spec(canary, 100, 0, False, STICKY_ENDED),
    }


def gatewayapi_mirror() -> dict[str, Any]:
    canary = _gateway("gatewayapi-progressive-delivery-5")
    return {
        "set_routes 100/0 mirrored": gatewayapi.http_route_spec(canary, 100, 0, True),
        "set_routes 0/100": gatewayapi.http_route_spec(canary, 0, 100, False),
    }


def istio_canary() -> dict[str, Any]:
    canary = docs_canary("istio-progressive-delivery-1", "istio")
    target = target_of(canary)
    return {
        "destination rule canary": istio.destination_rule_object(canary, "podinfo-canary"),
        "destination rule primary": istio.destination_rule_object(canary, "podinfo-primary"),
        "reconcile": istio.virtual_service_object(target),
        "set_routes 90/10": istio.routed_http(canary, 90, 10, False, None),
    }


def istio_mirror() -> dict[str, Any]:
    canary = with_analysis(docs_canary("istio-progressive-delivery-1", "istio"), mirror=True, mirrorWeight=50)
    return {"set_routes 100/0 mirrored": istio.routed_http(canary, 100, 0, True, None)}


def istio_ab() -> dict[str, Any]:
    canary = docs_canary("istio-ab-testing-1", "istio")
    return {
        "reconcile": istio.virtual_service_object(target_of(canary)),
        "set_routes 0/100": istio.routed_http(canary, 0, 100, False, None),
    }


def istio_session_affinity() -> dict[str, Any]:
    canary = docs_canary("istio-progressive-delivery-2", "istio")
    with_primary = with_analysis(
        canary,
        sessionAffinity={
            "cookieName": "flagger-cookie",
            "primaryCookieName": "flagger-primary-cookie",
            "maxAge": 21600,
            "domain": "example.com",
            "httpOnly": True,
            "sameSite": "Lax",
        },
    )
    return {
        "set_routes 90/10": istio.routed_http(canary, 90, 10, False, STICKY),
        "set_routes 90/10 with a primary cookie": istio.routed_http(with_primary, 90, 10, False, STICKY_WITH_PRIMARY),
        "set_routes 100/0 after the run": istio.routed_http(canary, 100, 0, False, STICKY_ENDED),
    }


def istio_delegation_tcp() -> dict[str, Any]:
    base = docs_canary("istio-progressive-delivery-1", "istio")
    delegate = with_service(base, hosts=[], gateways=[], delegation=True, portDiscovery=True)
    tcp = with_service(base, appProtocol="tcp", match=[{"port": 9898}])
    return {
        "delegate reconcile": istio.virtual_service_object(target_of(delegate)),
        "tcp reconcile": istio.virtual_service_object(target_of(tcp)),
    }


def _smi(name: str) -> dict[str, Any]:
    canary = router_canary("smi", name)
    flavour = smi.smi_flavour(canary.spec.provider)
    return {
        "reconcile": smi.traffic_split_object(canary, flavour),
        "set_routes 90/10": smi.traffic_split_spec(canary, flavour, 90, 10),
    }


def _nginx_canary_ingress(canary: Canary) -> tuple[nginx.Annotations, dict[str, Any]]:
    """The default annotations and the canary Ingress `reconcile` creates from the podinfo Ingress."""
    ingress = yaml_object(ROUTER_DATA / "nginx" / "ingress-podinfo.yaml")
    annotations = nginx.Annotations(nginx.DEFAULT_ANNOTATIONS_PREFIX)
    created = nginx.canary_ingress_object(
        canary, ingress, nginx.canary_ingress_spec(canary, ingress) or {}, annotations
    )
    return annotations, created


def nginx_canary() -> dict[str, Any]:
    canary = docs_canary("nginx-progressive-delivery-1")
    annotations, created = _nginx_canary_ingress(canary)
    at_10 = annotations.routed(canary, created["metadata"]["annotations"], 10)
    return {
        "reconcile": created,
        "annotations at 90/10": at_10,
        "annotations back at 100/0": annotations.routed(canary, at_10, 0),
    }


def nginx_ab() -> dict[str, Any]:
    canary = docs_canary("linkerd-progressive-delivery-3")
    annotations, created = _nginx_canary_ingress(canary)
    at_100 = annotations.routed(canary, created["metadata"]["annotations"], 100)
    return {"annotations at 0/100": at_100, "annotations back at 100/0": annotations.routed(canary, at_100, 0)}


CASES: dict[str, Case] = {
    "gatewayapi/canary": gatewayapi_canary,
    "gatewayapi/v1beta1-linkerd": gatewayapi_v1beta1_linkerd,
    "gatewayapi/options": gatewayapi_options,
    "gatewayapi/ab-testing": gatewayapi_ab,
    "gatewayapi/session-affinity": gatewayapi_session_affinity,
    "gatewayapi/blue-green-mirror": gatewayapi_mirror,
    "istio/canary": istio_canary,
    "istio/mirror": istio_mirror,
    "istio/ab-testing": istio_ab,
    "istio/session-affinity": istio_session_affinity,
    "istio/delegation-and-tcp": istio_delegation_tcp,
    "smi/linkerd": lambda: _smi("canary-linkerd"),
    "smi/osm": lambda: _smi("canary-osm"),
    "smi/smi-v1alpha3-istio": lambda: _smi("canary-smi-v1alpha3-istio"),
    "nginx/canary": nginx_canary,
    "nginx/ab-testing": nginx_ab,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_objects_match_the_reviewed_golden(case: str) -> None:
    generated = CASES[case]()
    path = ROUTER_DATA / f"{case}.golden.yaml"
    if UPDATE:
        path.write_text(yaml.safe_dump(generated, sort_keys=False, width=120))
    assert path.exists(), f"no golden {path}; create it with CANARYFLOW_UPDATE_GOLDENS=1 and review it"
    assert generated == yaml.safe_load(path.read_text())
