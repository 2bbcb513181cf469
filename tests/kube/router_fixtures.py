"""Inputs shared by the router tests: Flagger's documented podinfo canaries, per provider, and cookie values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from activities.contracts import ReleaseTarget, Routes, SessionAffinityRoute, SetRoutes
from canaryflow.loader import parse_yaml
from canaryflow.spec import Canary

DATA = Path(__file__).resolve().parents[1] / "data"
FLAGGER_DOCS = DATA / "canaries" / "flagger-docs"
ROUTER_DATA = DATA / "routers"

# Traffic steps every router test walks through: all primary, a canary step, half, all canary.
STEPS = [(100, 0), (90, 10), (50, 50), (0, 100)]

# What the workflow passes while the canary gets traffic (values fixed so objects are comparable).
STICKY = SessionAffinityRoute(cookie_name="flagger-cookie", cookie_value="LpGFBvQkTz", max_age=21600)
STICKY_WITH_PRIMARY = SessionAffinityRoute(
    cookie_name="flagger-cookie",
    cookie_value="LpGFBvQkTz",
    max_age=21600,
    primary_cookie_name="flagger-primary-cookie",
    primary_cookie_value="QwErTyUiOp",
)
# ... and once traffic is back on the primary: the last canary cookie is to be expired.
STICKY_ENDED = SessionAffinityRoute(
    cookie_name="flagger-cookie", cookie_value="", max_age=21600, previous_cookie="LpGFBvQkTz"
)


def canary_from(path: Path, provider: str | None = None, **spec_updates: Any) -> Canary:
    """The Canary in a YAML file (the first one of a multi-document file), with `provider` set if given."""
    canaries = [resource for resource in parse_yaml(path.read_text(), str(path)) if isinstance(resource, Canary)]
    canary = canaries[0]
    data = canary.model_dump(by_alias=True, exclude_none=True)
    if provider is not None:
        data["spec"]["provider"] = provider
    for key, value in spec_updates.items():
        data["spec"][key] = value
    return Canary.model_validate(data)


def docs_canary(name: str, provider: str | None = None, **spec_updates: Any) -> Canary:
    return canary_from(FLAGGER_DOCS / f"{name}.yaml", provider, **spec_updates)


def router_canary(router: str, name: str, provider: str | None = None) -> Canary:
    return canary_from(ROUTER_DATA / router / f"{name}.yaml", provider)


def with_service(canary: Canary, **service_updates: Any) -> Canary:
    data = canary.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["service"].update(service_updates)
    return Canary.model_validate(data)


def with_analysis(canary: Canary, **analysis_updates: Any) -> Canary:
    data = canary.model_dump(by_alias=True, exclude_none=True)
    data["spec"]["analysis"].update(analysis_updates)
    return Canary.model_validate(data)


def target_of(canary: Canary) -> ReleaseTarget:
    return ReleaseTarget(canary=canary, revision="rev-2")


def routes(
    canary: Canary, primary: int, canary_weight: int, mirrored: bool = False, sticky: SessionAffinityRoute | None = None
) -> SetRoutes:
    return SetRoutes(
        target=target_of(canary),
        routes=Routes(primary_weight=primary, canary_weight=canary_weight, mirrored=mirrored),
        session_affinity=sticky,
    )


def yaml_object(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded
