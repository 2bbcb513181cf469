"""The router interface (Flagger's router.Interface) and its registry, keyed by the canary's provider."""

from __future__ import annotations

from typing import Protocol

from activities.contracts import ReleaseTarget, Routes, SetRoutes


class Router(Protocol):
    """Routing objects of one canary. `set_routes` writes absolute weights, so a retried call is harmless."""

    async def reconcile(self, target: ReleaseTarget) -> None: ...

    async def set_routes(self, request: SetRoutes) -> None: ...

    async def get_routes(self, target: ReleaseTarget) -> Routes: ...

    async def finalize(self, target: ReleaseTarget) -> None: ...


ROUTERS: dict[str, Router] = {}


def register_router(provider: str, router: Router) -> None:
    ROUTERS[provider] = router


def router_key(provider: str | None) -> str:
    """Flagger's factory matching: `smi:v1alpha3:istio` -> `smi`, `gatewayapi:v1beta1` -> `gatewayapi`."""
    return (provider or "kubernetes").split(":", 1)[0]
