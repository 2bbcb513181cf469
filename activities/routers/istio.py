"""The Istio router (Flagger's IstioRouter): DestinationRules `<apex>-canary`/`<apex>-primary` and the
VirtualService `<apex>`, all `networking.istio.io/v1beta1`.

- DestinationRules: `host` = the Service, `trafficPolicy` = `spec.service.trafficPolicy`.
- VirtualService: hosts = `spec.service.hosts` plus the apex name (unless present or `*`), gateways =
  `spec.service.gateways` or `[mesh]`; with `delegation` both are empty (a delegate VirtualService). One HTTP route
  with `spec.service.match/rewrite/timeout/retries/corsPolicy/headers` to the primary and canary destinations, or a
  TCP route when `appProtocol: tcp`. A/B (`analysis.match`): a first route with analysis x service matches (headers
  and sourceLabels of the analysis win) and a second one to the primary. Mirroring sets `mirror` (and
  `mirrorPercentage` from `analysis.mirrorWeight`) on the first route. Session affinity puts sticky
  `Cookie`-regex routes first and `Set-Cookie` response headers on the weighted route's destinations.
- Metadata: labels = `spec.service.apex.labels`, annotations = apex ones plus Flux's opt-outs; only kubectl's
  last-applied-configuration and Flagger's original-configuration annotations survive. Taking over a
  VirtualService (a spec change without kubectl's annotation) stores the previous spec in
  `flagger.kubernetes.io/original-configuration`; `finalize` restores from either annotation.
- `reconcile` rewrites only when the spec differs, ignoring weights, mirroring and sticky routes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

from activities.contracts import ReleaseTarget, Routes, SessionAffinityRoute, SetRoutes
from activities.kube import rest
from activities.kube.labels import KUBECTL_LAST_APPLIED_ANNOTATION
from activities.kube.names import apex_service_name, canary_service_name, primary_service_name
from activities.routers import kube_affinity as sticky
from activities.routers import kube_objects as ko
from activities.routers.kube_objects import Object
from canaryflow.spec import Canary

GROUP = "networking.istio.io"
VIRTUAL_SERVICE = rest.Resource(f"{GROUP}/v1beta1", "virtualservices", "VirtualService")
DESTINATION_RULE = rest.Resource(f"{GROUP}/v1beta1", "destinationrules", "DestinationRule")


def is_tcp(canary: Canary) -> bool:
    return (canary.spec.service.app_protocol or "").lower() == "tcp"


def destination_rule_spec(canary: Canary, host: str) -> Object:
    spec: Object = {"host": host}
    if canary.spec.service.traffic_policy:
        spec["trafficPolicy"] = copy.deepcopy(canary.spec.service.traffic_policy)
    return spec


def destination(canary: Canary, host: str, weight: int) -> Object:
    service = canary.spec.service
    target: Object = {"host": host}
    # The port is needed when the route is served by an ingress gateway (or a delegating VirtualService).
    through_gateway = bool(service.gateways) and service.gateways[0] != "mesh"
    if service.port_discovery and (through_gateway or service.delegation):
        target["port"] = {"number": service.port}
    return {"destination": target, "weight": weight}


def merge_matches(analysis: list[Object], service: list[Object]) -> list[Object]:
    """Every analysis match combined with every service match; the analysis' headers and sourceLabels win."""
    if not service:
        return copy.deepcopy(analysis)
    merged: list[Object] = []
    for condition in analysis:
        for base in service:
            combined = copy.deepcopy(base)
            if condition.get("headers") is not None:
                combined["headers"] = copy.deepcopy(condition["headers"])
            if condition.get("sourceLabels") is not None:
                combined["sourceLabels"] = copy.deepcopy(condition["sourceLabels"])
            merged.append(combined)
    return merged


def http_route(canary: Canary, match: list[Object], route: list[Object]) -> Object:
    """An HTTP route carrying the service's match, rewrite, timeout, retries, CORS policy and headers."""
    service = canary.spec.service
    result: Object = {}
    if match:
        result["match"] = copy.deepcopy(match)
    if service.rewrite is not None:
        rewrite = (("uri", service.rewrite.uri), ("authority", service.rewrite.authority))
        result["rewrite"] = {key: value for key, value in rewrite if value}
    if service.timeout:
        result["timeout"] = service.timeout
    if service.retries:
        result["retries"] = copy.deepcopy(service.retries)
    if service.cors_policy:
        result["corsPolicy"] = copy.deepcopy(service.cors_policy)
    if service.headers:
        result["headers"] = copy.deepcopy(service.headers)
    result["route"] = route
    return result


def destinations(canary: Canary, primary_weight: int, canary_weight: int) -> list[Object]:
    """The primary then the canary destination, with these weights."""
    return [
        destination(canary, primary_service_name(canary), primary_weight),
        destination(canary, canary_service_name(canary), canary_weight),
    ]


def _tcp_route(canary: Canary, primary_weight: int, canary_weight: int) -> Object:
    route: Object = {}
    ports = [{"port": match["port"]} if match.get("port") else {} for match in canary.spec.service.match]
    if ports:
        route["match"] = ports
    route["route"] = destinations(canary, primary_weight, canary_weight)
    return route


def _ab_routes(canary: Canary, primary_weight: int, canary_weight: int) -> list[Object]:
    """The matching requests' route, then the rest's: only to the primary, with the primary's weight (as Flagger)."""
    analysis = canary.spec.analysis
    assert analysis is not None
    service_match = canary.spec.service.match
    return [
        http_route(
            canary, merge_matches(analysis.match, service_match), destinations(canary, primary_weight, canary_weight)
        ),
        http_route(canary, service_match, [destination(canary, primary_service_name(canary), primary_weight)]),
    ]


def _hosts_and_gateways(target: ReleaseTarget) -> tuple[list[str], list[str]]:
    canary = target.canary
    service = canary.spec.service
    apex = apex_service_name(canary)
    if service.delegation:
        if service.hosts or service.gateways:
            raise ko.invalid_spec(
                target, f"VirtualService {apex} cannot have hosts and gateways when delegation is enabled"
            )
        return [], []
    hosts = list(service.hosts)
    if not any(host in (apex, "*") for host in hosts):
        hosts.append(apex)
    gateways = list(service.gateways) or ["mesh"]
    return hosts, gateways


def virtual_service_spec(target: ReleaseTarget) -> Object:
    """The VirtualService spec `reconcile` writes: all traffic to the primary."""
    canary = target.canary
    hosts, gateways = _hosts_and_gateways(target)
    spec: Object = {"hosts": hosts}
    if gateways:
        spec["gateways"] = gateways
    analysis = canary.spec.analysis
    if is_tcp(canary):
        spec["tcp"] = [_tcp_route(canary, 100, 0)]
    elif analysis is not None and analysis.match:
        spec["http"] = _ab_routes(canary, 100, 0)
    else:
        spec["http"] = [http_route(canary, canary.spec.service.match, destinations(canary, 100, 0))]
    return spec


def _cookie_match(cookie: str) -> Object:
    return {"headers": {sticky.COOKIE_HEADER: {"regex": sticky.cookie_regex(cookie)}}}


def _set_cookie_headers(value: str) -> Object:
    return {"response": {"add": {sticky.SET_COOKIE_HEADER: value}}}


def _cookie_route(canary: Canary, weighted: Object, cookie: str) -> Object:
    """A copy of the weighted route for the requests carrying `cookie`."""
    route = copy.deepcopy(weighted)
    route["match"] = merge_matches([_cookie_match(cookie)], canary.spec.service.match)
    return route


def _sticky_routes(canary: Canary, canary_weight: int, route: SessionAffinityRoute, weighted: Object) -> list[Object]:
    """Flagger's session-affinity routes: [sticky canary, (sticky primary), weighted]."""
    plan = sticky.sticky_routes(canary, route, canary_weight, with_primary_cookie=True)
    if not plan.pinned:
        if not plan.expired:
            return [copy.deepcopy(weighted), weighted]
        # Clients still holding the last run's canary cookie get it expired.
        expiring = _cookie_route(canary, weighted, plan.expired)
        response = expiring.setdefault("headers", {}).setdefault("response", {})
        response.setdefault("add", {})[sticky.SET_COOKIE_HEADER] = sticky.expire_cookie(plan.expired)
        return [expiring, weighted]
    routes = [
        {**_cookie_route(canary, weighted, cookie), "route": destinations(canary, to_primary, to_canary)}
        for cookie, to_primary, to_canary in plan.pinned
    ]
    for item in weighted["route"]:
        host = item["destination"]["host"]
        if host in plan.set_cookies:
            item["headers"] = _set_cookie_headers(plan.set_cookies[host])
    return [*routes, weighted]


def routed_http(
    canary: Canary, primary_weight: int, canary_weight: int, mirrored: bool, affinity: SessionAffinityRoute | None
) -> list[Object]:
    """The `http` routes Flagger's SetRoutes writes."""
    analysis = canary.spec.analysis
    if analysis is not None and analysis.match:
        return _ab_routes(canary, primary_weight, canary_weight)
    weighted = http_route(canary, canary.spec.service.match, destinations(canary, primary_weight, canary_weight))
    routes = [weighted]
    if affinity is not None and sticky.affinity_spec(canary) is not None:
        routes = _sticky_routes(canary, canary_weight, affinity, weighted)
    if mirrored:
        routes[0]["mirror"] = {"host": canary_service_name(canary)}
        if analysis is not None and analysis.mirror_weight > 0:
            routes[0]["mirrorPercentage"] = {"value": analysis.mirror_weight}
    return routes


def comparable_spec(canary: Canary, spec: Object) -> Object:
    """`spec` without what traffic steps change: weights, mirroring, sticky routes and their cookie headers."""
    result = copy.deepcopy(spec)
    affinity = sticky.affinity_spec(canary)
    names = [name for name in ((affinity.cookie_name, affinity.primary_cookie_name) if affinity else ()) if name]
    http: list[Object] = result.get("http") or []
    if names:
        http = [
            route
            for route in http
            if not any(
                name in str(((match.get("headers") or {}).get(sticky.COOKIE_HEADER) or {}).get("regex", ""))
                for name in names
                for match in route.get("match") or []
            )
        ]
    for route in http:
        route.pop("mirror", None)
        route.pop("mirrorPercentage", None)
    for route in [*http, *(result.get("tcp") or [])]:
        for item in route.get("route") or []:
            item.pop("weight", None)
            if affinity is not None:
                item.pop("headers", None)
    result["http"] = http
    pruned: Object = ko.without_empty(result)
    return pruned


def _destination_weights(
    items: list[Object], primary: str, canary_host: str, weights: tuple[int, int]
) -> tuple[int, int]:
    """`weights` (primary, canary) overwritten by each item whose destination is the primary or the canary."""
    primary_weight, canary_weight = weights
    for item in items:
        host = (item.get("destination") or {}).get("host")
        if host == primary:
            primary_weight = int(item.get("weight") or 0)
        if host == canary_host:
            canary_weight = int(item.get("weight") or 0)
    return primary_weight, canary_weight


def routes_of(canary: Canary, virtual_service: Object) -> tuple[int, int, bool]:
    """Flagger's GetRoutes: weights of the last route with a canary destination (with session affinity, of the
    one whose destinations set cookies) and whether it mirrors."""
    primary, canary_host = primary_service_name(canary), canary_service_name(canary)
    spec = virtual_service.get("spec") or {}
    routes: list[Object] = (spec.get("tcp") if is_tcp(canary) else spec.get("http")) or []
    chosen: Object = {}
    for route in routes:
        if any((item.get("destination") or {}).get("host") == canary_host for item in route.get("route") or []):
            chosen = route
    primary_weight, canary_weight = _destination_weights(chosen.get("route") or [], primary, canary_host, (0, 0))
    mirrored = not is_tcp(canary) and bool((chosen.get("mirror") or {}).get("host"))
    if sticky.affinity_spec(canary) is not None and not is_tcp(canary):
        for route in routes:
            cookie_setting = [item for item in route.get("route") or [] if item.get("headers") is not None]
            primary_weight, canary_weight = _destination_weights(
                cookie_setting, primary, canary_host, (primary_weight, canary_weight)
            )
    return primary_weight, canary_weight, mirrored


def destination_rule_object(canary: Canary, host: str) -> Object:
    """A DestinationRule `reconcile` creates (without the ownerReference to the Canary)."""
    return ko.new_object(DESTINATION_RULE, canary.metadata.namespace, host, destination_rule_spec(canary, host))


def virtual_service_object(target: ReleaseTarget) -> Object:
    """The VirtualService `reconcile` creates (without the ownerReference to the Canary)."""
    canary = target.canary
    labels, annotations = ko.apex_metadata(canary)
    return ko.new_object(
        VIRTUAL_SERVICE,
        canary.metadata.namespace,
        apex_service_name(canary),
        virtual_service_spec(target),
        labels=labels,
        annotations=annotations,
    )


class IstioRouter(ko.BlockingRouter):
    """Routes a canary with Istio DestinationRules and a VirtualService."""

    kind = "VirtualService"

    def _reconcile(self, target: ReleaseTarget) -> None:
        canary = target.canary
        owners: list[Object] | None = None

        def owner_references() -> list[Object]:
            nonlocal owners
            if owners is None:
                owners = ko.canary_owner_references(self._api, canary)
            return owners

        for host in (canary_service_name(canary), primary_service_name(canary)):
            self._reconcile_destination_rule(canary, host, owner_references)
        self._reconcile_virtual_service(target, owner_references)

    def _reconcile_destination_rule(self, canary: Canary, host: str, owners: Callable[[], list[Object]]) -> None:
        update = ko.replace_changed_spec(destination_rule_spec(canary, host))
        namespace = canary.metadata.namespace

        def create() -> Object:
            return ko.with_owners(destination_rule_object(canary, host), owners())

        ko.upsert(self._api, DESTINATION_RULE, namespace, host, create=create, update=update)

    def _reconcile_virtual_service(self, target: ReleaseTarget, owners: Callable[[], list[Object]]) -> None:
        canary = target.canary
        desired = virtual_service_spec(target)
        labels, annotations = ko.apex_metadata(canary)
        name, namespace = apex_service_name(canary), canary.metadata.namespace

        def create() -> Object:
            return ko.with_owners(virtual_service_object(target), owners())

        def update(existing: Object) -> Object | None:
            current_annotations: dict[str, str] = (existing.get("metadata") or {}).get("annotations") or {}
            wanted_annotations = dict(annotations)
            for kept in (KUBECTL_LAST_APPLIED_ANNOTATION, ko.ORIGINAL_CONFIGURATION_ANNOTATION):
                if kept in current_annotations:
                    wanted_annotations[kept] = current_annotations[kept]
            current_spec: Object = existing.get("spec") or {}
            same_spec = comparable_spec(canary, current_spec) == comparable_spec(canary, desired)
            if not same_spec and KUBECTL_LAST_APPLIED_ANNOTATION not in wanted_annotations:
                # What the VirtualService was before this change, so `finalize` can give it back.
                wanted_annotations[ko.ORIGINAL_CONFIGURATION_ANNOTATION] = json.dumps(
                    current_spec, separators=(",", ":")
                )
            return ko.with_spec_and_metadata(existing, desired, labels, wanted_annotations, same_spec=same_spec)

        ko.upsert(self._api, VIRTUAL_SERVICE, namespace, name, create=create, update=update)

    def _set_routes(self, request: SetRoutes) -> None:
        target, routes = request.target, request.routes
        canary = target.canary
        if is_tcp(canary):
            wanted: tuple[str, list[Object]] = (
                "tcp",
                [_tcp_route(canary, routes.primary_weight, routes.canary_weight)],
            )
        else:
            try:
                http = routed_http(
                    canary, routes.primary_weight, routes.canary_weight, routes.mirrored, request.session_affinity
                )
            except ValueError as error:
                raise ko.invalid_spec(target, str(error)) from None
            wanted = ("http", http)

        def change(existing: Object) -> Object:
            existing.setdefault("spec", {})[wanted[0]] = wanted[1]
            return existing

        self._modify_existing(target, VIRTUAL_SERVICE, apex_service_name(canary), change)

    def _get_routes(self, target: ReleaseTarget) -> Routes:
        canary = target.canary
        name = apex_service_name(canary)
        found = self._read_existing(target, VIRTUAL_SERVICE, name)
        primary_weight, canary_weight, mirrored = routes_of(canary, found)
        self._require_weights(target, name, primary_weight, canary_weight)
        return Routes(
            primary_weight=ko.percent(primary_weight), canary_weight=ko.percent(canary_weight), mirrored=mirrored
        )

    def _finalize(self, target: ReleaseTarget) -> None:
        canary = target.canary
        name = apex_service_name(canary)

        def restore(existing: Object) -> Object | None:
            annotations = existing.get("metadata", {}).get("annotations") or {}
            try:
                if KUBECTL_LAST_APPLIED_ANNOTATION in annotations:
                    stored = json.loads(annotations[KUBECTL_LAST_APPLIED_ANNOTATION]).get("spec") or {}
                elif ko.ORIGINAL_CONFIGURATION_ANNOTATION in annotations:
                    stored = json.loads(annotations[ko.ORIGINAL_CONFIGURATION_ANNOTATION])
                else:
                    return None  # nothing recorded to revert to
            except (ValueError, AttributeError):
                raise ko.invalid_spec(target, f"VirtualService {name}: the stored original spec is not JSON") from None
            existing["spec"] = stored
            return existing

        self._modify_existing(target, VIRTUAL_SERVICE, name, restore)
