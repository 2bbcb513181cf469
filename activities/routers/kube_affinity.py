"""Session-affinity cookies of the Istio and Gateway API routers (Flagger's BuildCookie and cookie matches).

The workflow owns the cookie values (`SessionAffinityRoute`: random letters, kept in its state); Flagger keeps the
same values as `<cookieName>=<value>` strings in the Canary status. These helpers turn one into the other and
build the `Set-Cookie` values and `Cookie` header regexes both routers write.
"""

from __future__ import annotations

from activities.contracts import SessionAffinityRoute
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


def cookie_regex(cookie: str) -> str:
    """The `Cookie` header regex that matches requests carrying `name=value`."""
    name, _, value = cookie.partition("=")
    return f".*{name}.*{value}.*"
