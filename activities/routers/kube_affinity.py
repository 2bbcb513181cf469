"""Session-affinity cookies of the Istio and Gateway API routers (Flagger's BuildCookie and cookie matches).

The workflow owns the cookie values (`SessionAffinityRoute`: random letters, kept in its state); Flagger keeps the
same values as `<cookieName>=<value>` strings in the Canary status. These helpers turn one into the other and
build the `Set-Cookie` values and `Cookie` header regexes both routers write; `sticky_routes` decides, in neither
router's vocabulary, which cookie routes and `Set-Cookie` values a traffic step needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from activities.contracts import SessionAffinityRoute
from activities.kube.names import canary_service_name, primary_service_name
from canaryflow.durations import parse_duration
from canaryflow.spec import Canary, SessionAffinity

COOKIE_HEADER = "Cookie"
SET_COOKIE_HEADER = "Set-Cookie"
DEFAULT_MAX_AGE_SECONDS = 86400


def affinity_spec(canary: Canary) -> SessionAffinity | None:
    analysis = canary.spec.analysis
    return analysis.session_affinity if analysis is not None else None


def canary_cookie(route: SessionAffinityRoute) -> str:
    return f"{route.cookie_name}={route.cookie_value}" if route.cookie_value else ""


def required_canary_cookie(route: SessionAffinityRoute) -> str:
    """The canary cookie, which routes must set while the canary gets traffic; ValueError when there is none."""
    cookie = canary_cookie(route)
    if not cookie:
        raise ValueError("session affinity needs the canary cookie value while the canary gets traffic")
    return cookie


def primary_cookie(route: SessionAffinityRoute) -> str:
    if not route.primary_cookie_name or not route.primary_cookie_value:
        return ""
    return f"{route.primary_cookie_name}={route.primary_cookie_value}"


def previous_cookie(route: SessionAffinityRoute) -> str:
    return f"{route.cookie_name}={route.previous_cookie}" if route.previous_cookie else ""


def build_cookie(affinity: SessionAffinity, cookie: str, max_age: int) -> str:
    """A `Set-Cookie` value: the cookie, Max-Age, then Domain, HttpOnly, Partitioned, Path, SameSite and Secure."""
    parts = [cookie, f"Max-Age={max_age}"]
    if affinity.domain:
        parts.append(f"Domain={affinity.domain}")
    if affinity.http_only:
        parts.append("HttpOnly")
    if affinity.partitioned:
        parts.append("Partitioned")
    if affinity.path:
        parts.append(f"Path={affinity.path}")
    if affinity.same_site:
        parts.append(f"SameSite={affinity.same_site}")
    if affinity.secure:
        parts.append("Secure")
    return "; ".join(parts)


def canary_set_cookie(affinity: SessionAffinity, cookie: str) -> str:
    return build_cookie(affinity, cookie, affinity.max_age or DEFAULT_MAX_AGE_SECONDS)


def primary_set_cookie(canary: Canary, affinity: SessionAffinity, cookie: str) -> str:
    """The primary cookie lives one analysis interval: a fresh one is set at every step."""
    analysis = canary.spec.analysis
    interval = int(parse_duration(analysis.interval)) if analysis is not None else 60
    return build_cookie(affinity, cookie, interval)


def expire_cookie(cookie: str) -> str:
    return f"{cookie}; Max-Age=-1"


@dataclass(frozen=True)
class StickyRoutes:
    """The routes Flagger's session affinity puts before the weighted route, and what the weighted one sets."""

    # (cookie, primary weight, canary weight): a route per cookie, in order, for the requests carrying it.
    pinned: tuple[tuple[str, int, int], ...]
    # The `Set-Cookie` value a weighted destination returns, by its Service name.
    set_cookies: dict[str, str]
    # The last run's canary cookie, expired while the canary gets no traffic ("": none).
    expired: str


def sticky_routes(
    canary: Canary, route: SessionAffinityRoute, canary_weight: int, *, with_primary_cookie: bool
) -> StickyRoutes:
    """Session affinity for a step sending `canary_weight` to the canary: while the canary gets traffic, clients
    with the canary cookie stay on the canary (and, `with_primary_cookie`, those with the primary cookie on the
    primary) and the weighted destinations hand out those cookies. ValueError without a canary cookie then."""
    affinity = affinity_spec(canary)
    assert affinity is not None
    if canary_weight == 0:
        return StickyRoutes(pinned=(), set_cookies={}, expired=previous_cookie(route))
    cookie = required_canary_cookie(route)
    pinned = [(cookie, 0, 100)]
    set_cookies = {canary_service_name(canary): canary_set_cookie(affinity, cookie)}
    primary = primary_cookie(route) if with_primary_cookie else ""
    if primary:
        pinned.append((primary, 100, 0))
        set_cookies[primary_service_name(canary)] = primary_set_cookie(canary, affinity, primary)
    return StickyRoutes(pinned=tuple(pinned), set_cookies=set_cookies, expired="")


def cookie_regex(cookie: str) -> str:
    """The `Cookie` header regex that matches requests carrying `name=value`."""
    name, _, value = cookie.partition("=")
    return f".*{name}.*{value}.*"
