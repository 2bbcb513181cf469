"""The SMI router (Flagger's SmiRouter, Smiv1alpha2Router, Smiv1alpha3Router): one TrafficSplit `<apex>`.

Which `split.smi-spec.io` version, by provider (Flagger's router factory): `linkerd` and `smi:v1alpha1[:<mesh>]`
write v1alpha1, whose backend weights are Kubernetes quantities (written as the strings `"0"`..`"100"`); `osm` and
`smi:v1alpha2[:<mesh>]` write v1alpha2 and `smi:v1alpha3[:<mesh>]` v1alpha3, both with integer weights.
`spec.service` is `spec.service.hosts[0]` or the apex name; backends are `<apex>-canary` then `<apex>-primary`.
With mesh `istio` the Istio gateways are recorded in an annotation. No A/B, no mirroring, no session affinity.
`reconcile` rewrites the spec only when something but the weights differs; metadata is written only at creation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from activities.contracts import ReleaseTarget, Routes, SetRoutes
from activities.kube import rest
from activities.kube.names import apex_service_name, canary_service_name, primary_service_name
from activities.routers import kube_objects as ko
from activities.routers.kube_objects import Object
from canaryflow.spec import Canary

GROUP = "split.smi-spec.io"
TRAFFIC_SPLIT_V1ALPHA1 = rest.Resource(f"{GROUP}/v1alpha1", "trafficsplits", "TrafficSplit")
TRAFFIC_SPLIT_V1ALPHA2 = rest.Resource(f"{GROUP}/v1alpha2", "trafficsplits", "TrafficSplit")
TRAFFIC_SPLIT_V1ALPHA3 = rest.Resource(f"{GROUP}/v1alpha3", "trafficsplits", "TrafficSplit")
ISTIO_GATEWAYS_ANNOTATION = "VirtualService.v1alpha3.networking.istio.io/spec.gateways"


@dataclass(frozen=True)
class SmiFlavour:
    resource: rest.Resource
    mesh: str

    @property
    def quantity_weights(self) -> bool:
        return self.resource is TRAFFIC_SPLIT_V1ALPHA1


def smi_flavour(provider: str | None) -> SmiFlavour:
    """The TrafficSplit version and target mesh of a provider; ValueError for a provider SMI does not serve."""
    if provider == "linkerd":
        return SmiFlavour(TRAFFIC_SPLIT_V1ALPHA1, "linkerd")
    if provider == "osm":
        return SmiFlavour(TRAFFIC_SPLIT_V1ALPHA2, "osm")
    for resource in (TRAFFIC_SPLIT_V1ALPHA1, TRAFFIC_SPLIT_V1ALPHA2, TRAFFIC_SPLIT_V1ALPHA3):
        prefix = f"smi:{resource.api_version.removeprefix(f'{GROUP}/')}"
        if provider is not None and provider.startswith(prefix):
            return SmiFlavour(resource, provider.removeprefix(f"{prefix}:"))
    raise ValueError(f"provider {provider!r} is not an SMI provider (linkerd, osm, smi:v1alpha1|2|3[:<mesh>])")


def _weight(flavour: SmiFlavour, weight: int) -> int | str:
    return str(weight) if flavour.quantity_weights else weight


def parse_weight(raw: Any) -> int:
    """A backend weight: an integer, or a quantity such as `"100"` or `"500m"` (fractions are truncated)."""
    if isinstance(raw, bool):
        return 0
    if isinstance(raw, int):
        return raw
    text = str(raw or "").strip()
    scale = Decimal(1)
    if text.endswith("m"):
        text, scale = text[:-1], Decimal("0.001")
    try:
        return int(Decimal(text) * scale)
    except InvalidOperation:
        return 0


def traffic_split_spec(
    canary: Canary, flavour: SmiFlavour, primary_weight: int = 100, canary_weight: int = 0
) -> Object:
    service = canary.spec.service
    return {
        "service": service.hosts[0] if service.hosts else apex_service_name(canary),
        "backends": [
            {"service": canary_service_name(canary), "weight": _weight(flavour, canary_weight)},
            {"service": primary_service_name(canary), "weight": _weight(flavour, primary_weight)},
        ],
    }


def traffic_split_annotations(canary: Canary, flavour: SmiFlavour) -> dict[str, str]:
    gateways = canary.spec.service.gateways
    if flavour.mesh == "istio" and gateways:
        return {ISTIO_GATEWAYS_ANNOTATION: json.dumps(gateways, separators=(",", ":"))}
    return {}


def traffic_split_object(canary: Canary, flavour: SmiFlavour) -> Object:
    """The TrafficSplit `reconcile` creates (without the ownerReference to the Canary)."""
    annotations = traffic_split_annotations(canary, flavour)
    spec = traffic_split_spec(canary, flavour)
    return ko.new_object(
        flavour.resource, canary.metadata.namespace, apex_service_name(canary), spec, annotations=annotations
    )


def _without_weights(spec: Object) -> Object:
    backends = [
        {key: value for key, value in backend.items() if key != "weight"} for backend in spec.get("backends") or []
    ]
    pruned: Object = ko.without_empty({**spec, "backends": backends})
    return pruned


def routes_of(canary: Canary, split: Object) -> tuple[int, int]:
    primary, canary_name = primary_service_name(canary), canary_service_name(canary)
    primary_weight, canary_weight = 0, 0
    for backend in (split.get("spec") or {}).get("backends") or []:
        if backend.get("service") == primary:
            primary_weight = parse_weight(backend.get("weight"))
        if backend.get("service") == canary_name:
            canary_weight = parse_weight(backend.get("weight"))
    return ko.percent(primary_weight), ko.percent(canary_weight)


class SmiRouter(ko.BlockingRouter):
    """Routes a canary with an SMI TrafficSplit (Linkerd, OSM, or any SMI mesh)."""

    kind = "TrafficSplit"

    def _flavour(self, target: ReleaseTarget) -> SmiFlavour:
        try:
            return smi_flavour(target.canary.spec.provider)
        except ValueError as error:
            raise ko.invalid_spec(target, str(error)) from None

    def _reconcile(self, target: ReleaseTarget) -> None:
        canary = target.canary
        flavour = self._flavour(target)
        desired = traffic_split_spec(canary, flavour)
        name, namespace = apex_service_name(canary), canary.metadata.namespace

        def create() -> Object:
            return self._owned(canary, traffic_split_object(canary, flavour))

        update = ko.replace_changed_spec(desired, _without_weights)
        ko.upsert(self._api, flavour.resource, namespace, name, create=create, update=update)

    def _set_routes(self, request: SetRoutes) -> None:
        target, routes = request.target, request.routes
        canary = target.canary
        flavour = self._flavour(target)
        backends = traffic_split_spec(canary, flavour, routes.primary_weight, routes.canary_weight)["backends"]

        def change(existing: Object) -> Object:
            existing.setdefault("spec", {})["backends"] = backends
            return existing

        self._modify_existing(target, flavour.resource, apex_service_name(canary), change)

    def _get_routes(self, target: ReleaseTarget) -> Routes:
        canary = target.canary
        name = apex_service_name(canary)
        found = self._read_existing(target, self._flavour(target).resource, name)
        primary_weight, canary_weight = routes_of(canary, found)
        self._require_weights(target, name, primary_weight, canary_weight)
        return Routes(primary_weight=primary_weight, canary_weight=canary_weight, mirrored=False)
