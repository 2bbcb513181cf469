"""The `kubernetes` provider's router (Flagger's NopRouter): no mesh, no routing object.

With `provider: kubernetes` Flagger runs blue/green only: the apex Service always selects the primary pods (the
workload provider keeps the `<apex>`, `<apex>-primary` and `<apex>-canary` ClusterIP Services), the canary is
tested through `<apex>-canary`, and promotion updates the primary in place. Traffic is never split, so every
call here is a no-op. Flagger's NopRouter reports 0/100 while `status.iterations > 0`; the release workflow
keeps that state itself, so `get_routes` reports what the apex Service serves: the primary.
"""

from __future__ import annotations

from kubernetes import client as k8s

from activities.contracts import ReleaseTarget, Routes, SetRoutes


class KubernetesRouter:
    """Routes nothing: the apex Service keeps pointing at the primary."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._api = api_client

    async def reconcile(self, target: ReleaseTarget) -> None:
        return None

    async def set_routes(self, request: SetRoutes) -> None:
        return None

    async def get_routes(self, target: ReleaseTarget) -> Routes:
        return Routes(primary_weight=100, canary_weight=0, mirrored=False)

    async def finalize(self, target: ReleaseTarget) -> None:
        return None
