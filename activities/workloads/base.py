"""The workload interface (Flagger's canary.Controller) and its registry, keyed by platform."""

from __future__ import annotations

from typing import Literal, Protocol

from activities.contracts import InitializeResult, ReadinessCheck, ReleaseTarget


class WorkloadProvider(Protocol):
    """Idempotent operations on the primary/canary workloads of one canary.

    `check_ready` raises `ApplicationError(type=ERR_NOT_READY)` while rolling out (retried by the workflow) and
    `ApplicationError(type=ERR_PROGRESS_DEADLINE, non_retryable=True)` when the rollout is stuck for good.
    """

    async def initialize(self, target: ReleaseTarget) -> InitializeResult | None:
        """Bootstrap the primary if missing, apply `target.image` to the canary target.

        None (or `needs_analysis=True`): analyse the target; `needs_analysis=False`: it runs the primary's revision.
        """

    async def check_ready(self, check: ReadinessCheck) -> None: ...

    async def scale_from_zero(self, target: ReleaseTarget) -> None: ...

    async def scale_to_zero(self, target: ReleaseTarget) -> None: ...

    async def promote(self, target: ReleaseTarget) -> None:
        """Copy the canary's spec (version, config) to the primary."""


WORKLOADS: dict[str, WorkloadProvider] = {}


def register_workload(platform: str, provider: WorkloadProvider) -> None:
    WORKLOADS[platform] = provider


def platform_of(target: ReleaseTarget) -> Literal["local", "kubernetes"]:
    """`LocalApp` targets run on the local platform; everything else is Kubernetes."""
    return "local" if target.canary.spec.target_ref.kind == "LocalApp" else "kubernetes"
