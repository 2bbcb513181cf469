"""The Gateway API router (Flagger's GatewayAPIRouter and GatewayAPIV1Beta1Router): one HTTPRoute `<apex>`.

- Provider `gatewayapi:v1beta1` writes `gateway.networking.k8s.io/v1beta1`; `gatewayapi:v1` (and plain
  `gatewayapi`) writes `v1`. Only v1 carries timeouts, the CORS filter, the primary session cookie and the
  parent-acceptance check in `get_routes`, as in Flagger.
- Rules: `spec.service.match` (default PathPrefix `/`) to the `-primary`/`-canary` Services with weights; filters
  from `spec.service.headers`, `rewrite`, `mirror` and (v1) `corsPolicy`. A/B (`analysis.match`): the first rule
  matches analysis x service matches (headers and query params of the analysis win), a second rule sends the rest
  to the primary. Blue/green mirroring adds a RequestMirror filter to the canary. Session affinity puts sticky
  `Cookie`-regex rules before the weighted rule and `Set-Cookie` filters on its backends.
- Metadata: labels are `spec.service.apex.labels`; annotations are the apex ones plus Flux's opt-outs, and
  annotations other controllers added are kept. `reconcile` rewrites the spec only when it differs, ignoring
  weights, session-affinity rules and the canary mirror filter, so it never undoes a traffic step.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from activities.contracts import ReleaseTarget, Routes, SessionAffinityRoute, SetRoutes
from activities.kube import rest
from activities.kube.names import apex_service_name, canary_service_name, primary_service_name
from activities.routers import kube_affinity as sticky
from activities.routers import kube_objects as ko
from activities.routers.kube_objects import Object
from canaryflow.durations import parse_duration
from canaryflow.spec import Canary

GROUP = "gateway.networking.k8s.io"
HTTP_ROUTE_V1 = rest.Resource(f"{GROUP}/v1", "httproutes", "HTTPRoute")
HTTP_ROUTE_V1BETA1 = rest.Resource(f"{GROUP}/v1beta1", "httproutes", "HTTPRoute")


class UnsupportedMatch(ValueError):
    """An Istio-style match the Gateway API cannot express."""


def http_route_type(provider: str | None) -> rest.Resource:
    return HTTP_ROUTE_V1BETA1 if (provider or "").startswith("gatewayapi:v1beta1") else HTTP_ROUTE_V1


def _is_v1(canary: Canary) -> bool:
    return http_route_type(canary.spec.provider) is HTTP_ROUTE_V1


# ----------------------------------------------------------------------------------------------------
# Matches


def _string_match(kind: str, field: str, key: str, value: dict[str, Any]) -> Object:
    if value.get("exact"):
        return {"type": "Exact", "name": key, "value": value["exact"]}
    if value.get("regex"):
        return {"type": "RegularExpression", "name": key, "value": value["regex"]}
    raise UnsupportedMatch(f"Gateway API supports only exact and regex {kind} matches, not {field}.{key}: {value}")


def map_matches(requests: list[dict[str, Any]]) -> list[Object]:
    """Istio HTTPMatchRequests as Gateway API HTTPRouteMatches (uri, method, headers, queryParams)."""
    matches: list[Object] = []
    for request in requests:
        match: Object = {}
        uri = request.get("uri")
        if uri is not None:
            if uri.get("regex"):
                match["path"] = {"type": "RegularExpression", "value": uri["regex"]}
            elif uri.get("exact"):
                match["path"] = {"type": "Exact", "value": uri["exact"]}
            elif uri.get("prefix"):
                match["path"] = {"type": "PathPrefix", "value": uri["prefix"]}
            else:
                raise UnsupportedMatch(f"Gateway API doesn't support the uri match {uri}")
        method = request.get("method")
        if method is not None:
            if not method.get("exact"):
                raise UnsupportedMatch(f"Gateway API supports only exact method matches, not {method}")
            match["method"] = method["exact"]
        headers = [_string_match("header", "headers", key, value) for key, value in request.get("headers", {}).items()]
        if headers:
            match["headers"] = headers
        params = [
            _string_match("query", "queryParams", key, value) for key, value in request.get("queryParams", {}).items()
        ]
        if params:
            match["queryParams"] = params
        if match:
            matches.append(match)
    return matches


def merge_matches(analysis: list[Object], service: list[Object]) -> list[Object]:
    """Every analysis match combined with every service match; the analysis' headers and query params win."""
    if not analysis:
        return service
    if not service:
        return analysis
    merged: list[Object] = []
    for condition in analysis:
        for base in service:
            combined = copy.deepcopy(base)
            if condition.get("headers"):
                combined["headers"] = copy.deepcopy(condition["headers"])
            if condition.get("queryParams"):
                combined["queryParams"] = copy.deepcopy(condition["queryParams"])
            merged.append(combined)
    return merged


def _service_matches(canary: Canary) -> list[Object]:
    return map_matches(canary.spec.service.match)


def _route_matches(canary: Canary) -> list[Object]:
    return _service_matches(canary) or [{"path": {"type": "PathPrefix", "value": "/"}}]


def _cookie_match(cookie: str) -> Object:
    return {
        "headers": [{"type": "RegularExpression", "name": sticky.COOKIE_HEADER, "value": sticky.cookie_regex(cookie)}]
    }


# ----------------------------------------------------------------------------------------------------
# Filters, backends, rules


def _headers(values: dict[str, str]) -> list[Object]:
    return sorted(
        ({"name": name, "value": value} for name, value in values.items()), key=lambda h: (h["name"], h["value"])
    )


def _header_modifier(operations: dict[str, Any]) -> Object:
    modifier: Object = {}
    if operations.get("add"):
        modifier["add"] = _headers(operations["add"])
    if operations.get("set"):
        modifier["set"] = _headers(operations["set"])
    if operations.get("remove"):
        modifier["remove"] = list(operations["remove"])
    return modifier


def _cors_filter(policy: dict[str, Any]) -> Object:
    cors: Object = {}
    # Istio's allowOrigins (StringMatch patterns) has no Gateway API equivalent; only allowOrigin is mapped.
    for source, target in (
        ("allowOrigin", "allowOrigins"),
        ("allowMethods", "allowMethods"),
        ("allowHeaders", "allowHeaders"),
        ("exposeHeaders", "exposeHeaders"),
    ):
        if policy.get(source):
            cors[target] = list(policy[source])
    if policy.get("allowCredentials"):
        cors["allowCredentials"] = True
    if policy.get("maxAge"):
        with contextlib.suppress(ValueError):  # Flagger drops a max age Go cannot parse
            cors["maxAge"] = int(parse_duration(str(policy["maxAge"])))
    return {"type": "CORS", "cors": cors}


def _mirror_filter(mirror: dict[str, Any], v1: bool) -> Object:
    if not v1:
        return {"type": "RequestMirror", "requestMirror": copy.deepcopy(mirror)}
    reference = mirror.get("backendRef", {})
    kept = {key: reference[key] for key in ("group", "kind", "namespace", "name", "port") if key in reference}
    return {"type": "RequestMirror", "requestMirror": {"backendRef": kept}}


def route_filters(canary: Canary) -> list[Object]:
    service = canary.spec.service
    v1 = _is_v1(canary)
    filters: list[Object] = []
    if service.headers:
        if service.headers.get("request") is not None:
            modifier = _header_modifier(service.headers["request"])
            filters.append({"type": "RequestHeaderModifier", "requestHeaderModifier": modifier})
        if service.headers.get("response") is not None:
            modifier = _header_modifier(service.headers["response"])
            filters.append({"type": "ResponseHeaderModifier", "responseHeaderModifier": modifier})
    if service.rewrite is not None:
        rewrite: Object = {}
        if service.rewrite.authority:
            rewrite["hostname"] = service.rewrite.authority
        if service.rewrite.uri:
            path_type = "ReplacePrefixMatch" if service.rewrite.type == "ReplacePrefixMatch" else "ReplaceFullPath"
            key = "replacePrefixMatch" if path_type == "ReplacePrefixMatch" else "replaceFullPath"
            rewrite["path"] = {"type": path_type, key: service.rewrite.uri}
        filters.append({"type": "URLRewrite", "urlRewrite": rewrite})
    filters.extend(_mirror_filter(mirror, v1) for mirror in service.mirror)
    if v1 and service.cors_policy is not None:
        filters.append(_cors_filter(service.cors_policy))
    return filters


def backend_ref(name: str, weight: int, port: int) -> Object:
    return {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}


def backend_refs(canary: Canary, primary_weight: int, canary_weight: int) -> list[Object]:
    """The primary then the canary Service, with these weights."""
    port = canary.spec.service.port
    return [
        backend_ref(primary_service_name(canary), primary_weight, port),
        backend_ref(canary_service_name(canary), canary_weight, port),
    ]


def _timeouts(canary: Canary) -> Object | None:
    service = canary.spec.service
    if not _is_v1(canary) or not (service.timeout or service.backend_timeout):
        return None
    timeouts: Object = {}
    if service.timeout:
        timeouts["request"] = service.timeout
    if service.backend_timeout:
        timeouts["backendRequest"] = service.backend_timeout
    return timeouts


def _rule(canary: Canary, matches: list[Object], backends: list[Object]) -> Object:
    rule: Object = {"matches": copy.deepcopy(matches)}
    filters = route_filters(canary)
    if filters:
        rule["filters"] = filters
    rule["backendRefs"] = backends
    timeouts = _timeouts(canary)
    if timeouts is not None:
        rule["timeouts"] = timeouts
    return rule


def _parent_refs(canary: Canary) -> list[Object]:
    return [ref.model_dump(by_alias=True, exclude_none=True) for ref in canary.spec.service.gateway_refs]


def _set_cookie_filter(value: str) -> Object:
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": sticky.SET_COOKIE_HEADER, "value": value}]},
    }


def _cookie_rule(canary: Canary, weighted: Object, cookie: str) -> Object:
    """A copy of the weighted rule for the requests carrying `cookie`."""
    rule = copy.deepcopy(weighted)
    rule["matches"] = merge_matches([_cookie_match(cookie)], _service_matches(canary))
    return rule


def _sticky_rules(canary: Canary, canary_weight: int, route: SessionAffinityRoute, weighted: Object) -> list[Object]:
    """Flagger's session-affinity rules: [sticky canary, (v1) sticky primary, weighted]."""
    plan = sticky.sticky_routes(canary, route, canary_weight, with_primary_cookie=_is_v1(canary))
    if not plan.pinned:
        if not plan.expired:
            return [copy.deepcopy(weighted), weighted]
        # Clients still holding the last run's canary cookie get it expired.
        expiring = _cookie_rule(canary, weighted, plan.expired)
        expiring.setdefault("filters", []).append(_set_cookie_filter(sticky.expire_cookie(plan.expired)))
        return [expiring, weighted]
    rules = [
        {**_cookie_rule(canary, weighted, cookie), "backendRefs": backend_refs(canary, to_primary, to_canary)}
        for cookie, to_primary, to_canary in plan.pinned
    ]
    for backend in weighted["backendRefs"]:
        if backend["name"] in plan.set_cookies:
            backend.setdefault("filters", []).append(_set_cookie_filter(plan.set_cookies[backend["name"]]))
    return [*rules, weighted]


def http_route_spec(
    canary: Canary,
    primary_weight: int = 100,
    canary_weight: int = 0,
    mirrored: bool = False,
    affinity: SessionAffinityRoute | None = None,
) -> Object:
    """The HTTPRoute spec Flagger writes for these routes (reconcile writes the defaults: 100/0, no mirror)."""
    apex_primary, apex_canary = primary_service_name(canary), canary_service_name(canary)
    port = canary.spec.service.port
    analysis = canary.spec.analysis
    matches = _route_matches(canary)
    weighted = _rule(canary, matches, backend_refs(canary, primary_weight, canary_weight))
    if mirrored and analysis is not None and analysis.iterations > 0:
        mirror = {"backendRef": {"group": "", "kind": "Service", "name": apex_canary, "port": port}}
        weighted.setdefault("filters", []).append({"type": "RequestMirror", "requestMirror": mirror})
    spec: Object = {"parentRefs": _parent_refs(canary)}
    if canary.spec.service.hosts:
        spec["hostnames"] = list(canary.spec.service.hosts)
    rules = [weighted]
    if affinity is not None and sticky.affinity_spec(canary) is not None:
        rules = _sticky_rules(canary, canary_weight, affinity, weighted)
    if analysis is not None and analysis.match:
        rules[0]["matches"] = merge_matches(map_matches(analysis.match), matches)
        rules.append(_rule(canary, matches, [backend_ref(apex_primary, 100, port)]))
    spec["rules"] = rules
    return spec


# ----------------------------------------------------------------------------------------------------
# Reconcile comparison


def _is_cookie_rule(rule: Object, cookie_name: str) -> bool:
    return any(
        header.get("type") == "RegularExpression"
        and header.get("name") == sticky.COOKIE_HEADER
        and cookie_name in str(header.get("value", ""))
        for match in rule.get("matches") or []
        for header in match.get("headers") or []
    )


def comparable_spec(canary: Canary, spec: Object) -> Object:
    """`spec` without what traffic steps change: weights, sticky cookie rules and filters, the canary mirror."""
    result = copy.deepcopy(spec)
    affinity = sticky.affinity_spec(canary)
    analysis = canary.spec.analysis
    rules: list[Object] = result.get("rules") or []
    if affinity is not None:
        names = [affinity.cookie_name] + ([affinity.primary_cookie_name] if _is_v1(canary) else [])
        rules = [rule for rule in rules if not any(_is_cookie_rule(rule, name) for name in names)]
    canary_name = canary_service_name(canary)
    for rule in rules:
        for backend in rule.get("backendRefs") or []:
            backend.pop("weight", None)
            if affinity is not None:
                backend.pop("filters", None)
        if analysis is not None and analysis.mirror:
            rule["filters"] = [
                item
                for item in rule.get("filters") or []
                if not (
                    item.get("type") == "RequestMirror"
                    and (item.get("requestMirror") or {}).get("backendRef", {}).get("name") == canary_name
                )
            ]
    result["rules"] = rules
    pruned: Object = ko.without_empty(result)
    return pruned


# ----------------------------------------------------------------------------------------------------
# Router


def _weights(rule: Object, primary_name: str, canary_name: str) -> tuple[int | None, int | None]:
    primary: int | None = None
    canary: int | None = None
    for backend in rule.get("backendRefs") or []:
        if backend.get("name") == primary_name:
            primary = int(backend.get("weight", 1))
        if backend.get("name") == canary_name:
            canary = int(backend.get("weight", 1))
    return primary, canary


def routes_of(canary: Canary, route: Object) -> Routes:
    """Flagger's GetRoutes on an HTTPRoute: the weights of the two-backend (or cookie-setting) rule, and
    whether a rule mirrors to the canary."""
    primary_name, canary_name = primary_service_name(canary), canary_service_name(canary)
    primary_weight, canary_weight, mirrored = 0, 0, False
    weighted_rule: Object | None = None
    for rule in route.get("spec", {}).get("rules") or []:
        backends = rule.get("backendRefs") or []
        if sticky.affinity_spec(canary) is not None and any(backend.get("filters") for backend in backends):
            weighted_rule = rule
        if len(backends) == 2:
            primary, canary_w = _weights(rule, primary_name, canary_name)
            primary_weight = primary if primary is not None else primary_weight
            canary_weight = canary_w if canary_w is not None else canary_weight
        for item in rule.get("filters") or []:
            reference = (item.get("requestMirror") or {}).get("backendRef", {})
            if item.get("type") == "RequestMirror" and reference.get("name") == canary_name:
                mirrored = True
    if weighted_rule is not None:
        primary, canary_w = _weights(weighted_rule, primary_name, canary_name)
        primary_weight = primary if primary is not None else primary_weight
        canary_weight = canary_w if canary_w is not None else canary_weight
    return Routes(primary_weight=ko.percent(primary_weight), canary_weight=ko.percent(canary_weight), mirrored=mirrored)


def unaccepted_parent(route: Object) -> str | None:
    """Why the route is not ready: a parent whose Accepted condition is not True for the current generation."""
    generation = int(route.get("metadata", {}).get("generation") or 0)
    parents = route.get("status", {}).get("parents") or []
    for reference in route.get("spec", {}).get("parentRefs") or []:
        for parent in parents:
            if parent.get("parentRef") != reference:
                continue
            for condition in parent.get("conditions") or []:
                if condition.get("type") != "Accepted":
                    continue
                observed = int(condition.get("observedGeneration") or 0)
                if condition.get("status") != "True" or observed < generation:
                    return (
                        f"parent {reference.get('name')} is not ready (status: {condition.get('status')}, "
                        f"observed generation: {observed}, current generation: {generation})"
                    )
    return None


def http_route_object(canary: Canary, spec: Object | None = None) -> Object:
    """The HTTPRoute `reconcile` creates (without the ownerReference to the Canary)."""
    labels, annotations = ko.apex_metadata(canary)
    resource = http_route_type(canary.spec.provider)
    name, namespace = apex_service_name(canary), canary.metadata.namespace
    body = spec if spec is not None else http_route_spec(canary)
    return ko.new_object(resource, namespace, name, body, labels=labels, annotations=annotations)


class GatewayAPIRouter(ko.BlockingRouter):
    """Routes a canary with a Gateway API HTTPRoute named after the apex Service."""

    kind = "HTTPRoute"

    def _desired(self, target: ReleaseTarget, request: SetRoutes | None = None) -> Object:
        """The HTTPRoute spec for `request`'s routes (None: what `reconcile` writes)."""
        canary = target.canary
        if not canary.spec.service.gateway_refs:
            raise ko.invalid_spec(target, "spec.service.gatewayRefs must be set when using the Gateway API provider")
        try:
            if request is None:
                return http_route_spec(canary)
            routes = request.routes
            return http_route_spec(
                canary, routes.primary_weight, routes.canary_weight, routes.mirrored, request.session_affinity
            )
        except UnsupportedMatch as error:
            raise ko.invalid_spec(target, f"invalid request matching selectors: {error}") from None
        except ValueError as error:
            raise ko.invalid_spec(target, str(error)) from None

    def _reconcile(self, target: ReleaseTarget) -> None:
        canary = target.canary
        desired = self._desired(target)
        labels, annotations = ko.apex_metadata(canary)
        resource = http_route_type(canary.spec.provider)
        name, namespace = apex_service_name(canary), canary.metadata.namespace

        def create() -> Object:
            return self._owned(canary, http_route_object(canary, desired))

        def update(existing: Object) -> Object | None:
            # Annotations other controllers put on the route (e.g. a cloud gateway controller) are kept.
            merged = {**((existing.get("metadata") or {}).get("annotations") or {}), **annotations}
            same_spec = comparable_spec(canary, existing.get("spec") or {}) == comparable_spec(canary, desired)
            return ko.with_spec_and_metadata(existing, desired, labels, merged, same_spec=same_spec)

        ko.upsert(self._api, resource, namespace, name, create=create, update=update)

    def _set_routes(self, request: SetRoutes) -> None:
        target = request.target
        canary = target.canary
        desired = self._desired(target, request)

        def change(existing: Object) -> Object:
            existing["spec"] = desired
            return existing

        self._modify_existing(target, http_route_type(canary.spec.provider), apex_service_name(canary), change)

    def _get_routes(self, target: ReleaseTarget) -> Routes:
        canary = target.canary
        name = apex_service_name(canary)
        resource = http_route_type(canary.spec.provider)
        route = self._read_existing(target, resource, name)
        if resource is HTTP_ROUTE_V1:
            reason = unaccepted_parent(route)
            if reason is not None:
                raise ko.routes_not_ready(target, f"HTTPRoute {name}: {reason}")
        return routes_of(canary, route)
