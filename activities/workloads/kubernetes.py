"""Deployment and DaemonSet targets on Kubernetes (Flagger's DeploymentController / DaemonSetController).

`initialize` bootstraps what a release needs, idempotently:
- `<target>-primary` built from the target (labels, `-primary` config copies, owner = the Canary object when
  one exists in the cluster under `canaryflow.dev/v1beta1` or `flagger.app/v1beta1`), recording the revision
  it runs in the annotation `canaryflow.dev/revision`;
- the primary HPA / KEDA ScaledObject (`spec.autoscalerRef`);
- the ClusterIP services `<svc>-canary`, `<svc>-primary` and, once the primary is ready, the apex `<svc>`
  (selecting the primary's pods: taking over a running app causes no downtime);
- in CI mode (`target.image`, from `canaryflow release --image REPO:TAG`) the image is set on the target's
  container whose image repository is REPO, else on its first container. A target seen for the first time
  is copied to the primary *before* the image is set, so the new image goes through the analysis;
- the target scaled to zero (KEDA target paused) when the primary was just created, or when the target runs
  what the primary runs. A target with a new revision keeps running: the release scales it up anyway.
It returns whether the target's revision differs from the primary's (`needs_analysis`) and whether this was
the first sight of the target (`primary_bootstrapped`: the primary was created by this call, or by an earlier
attempt that stopped before the apex service selected it).

`promote` copies the target's pod template to the primary (config references renamed to the `-primary`
copies, which are synced first) and the autoscaler's spec to the primary autoscaler.

Every Kubernetes call runs in a thread (`run_blocking`) and every write is a conflict-safe read-modify-write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    ERR_INVALID_SPEC,
    ERR_NOT_READY,
    ERR_PROGRESS_DEADLINE,
    InitializeResult,
    ReadinessCheck,
    ReleaseTarget,
)
from activities.kube import autoscalers, configs, daemonsets, deployments, owner, rest, services
from activities.kube.client import retry_on_conflict, run_blocking
from activities.kube.labels import SELECTOR_LABELS, selector_label
from activities.kube.names import primary_name
from activities.kube.podspec import set_container_image
from activities.kube.primary import (
    Selector,
    WorkloadKind,
    new_primary,
    primary_template,
    promoted_primary,
    recorded_revision,
)
from activities.kube.readiness import Readiness, daemonset_readiness, deployment_readiness
from activities.kube.revision import template_and_configs_revision
from canaryflow.spec import Canary

_KINDS: dict[str, WorkloadKind] = {"Deployment": deployments.DEPLOYMENT, "DaemonSet": daemonsets.DAEMONSET}


def _kind(canary: Canary) -> WorkloadKind:
    kind = canary.spec.target_ref.kind
    if kind not in _KINDS:
        raise ApplicationError(
            f"targetRef kind {kind} is not a Kubernetes workload (Deployment or DaemonSet)",
            type=ERR_INVALID_SPEC,
            non_retryable=True,
        )
    return _KINDS[kind]


@dataclass(frozen=True)
class _Bootstrap:
    selector: Selector
    extra_ports: dict[str, int]
    owner: dict[str, Any] | None
    primary_created: bool


class KubernetesWorkload:
    """The `WorkloadProvider` of Deployment and DaemonSet targets.

    `include_label_prefixes` is Flagger's `-include-label-prefix` (target labels/annotations copied to generated
    objects; `*` = all), `selector_labels` its `-selector-labels`, `config_tracking` its
    `-enable-config-tracking`. `primary_ready_wait_seconds` bounds how long one `initialize` call waits for a new
    primary before raising NotReady (the activity is retried).
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        include_label_prefixes: Sequence[str] = (),
        selector_labels: Sequence[str] = SELECTOR_LABELS,
        config_tracking: bool = True,
        primary_ready_wait_seconds: float = 40.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self._api = api_client
        self._include = list(include_label_prefixes)
        self._selector_labels = tuple(selector_labels)
        self._config_tracking = config_tracking
        self._primary_ready_wait = primary_ready_wait_seconds
        self._poll = poll_seconds

    # ------------------------------------------------------------------------------------------------------
    # WorkloadProvider

    async def initialize(self, target: ReleaseTarget) -> InitializeResult:
        canary = target.canary
        kind = _kind(canary)
        boot = await run_blocking(self._bootstrap, canary, kind)
        if not canary.spec.skip_analysis:
            await self._wait_primary_ready(canary, kind)
        return await run_blocking(self._finish_initialize, target, kind, boot)

    async def check_ready(self, check: ReadinessCheck) -> None:
        canary = check.target.canary
        kind = _kind(canary)
        target_name = canary.spec.target_ref.name
        name = primary_name(target_name) if check.workload == "primary" else target_name
        workload = await run_blocking(rest.read, self._api, kind.resource, canary.metadata.namespace, name)
        readiness = self._readiness(
            kind, workload, check.threshold_percent, check.progress_deadline_seconds, check.rollout_started_at
        )
        if readiness.ready:
            return
        message = self._not_ready_message(kind, check.workload, name, canary.metadata.namespace, readiness.message)
        if readiness.retryable:
            raise ApplicationError(message, type=ERR_NOT_READY)
        raise ApplicationError(message, type=ERR_PROGRESS_DEADLINE, non_retryable=True)

    async def scale_from_zero(self, target: ReleaseTarget) -> None:
        canary = target.canary
        kind = _kind(canary)
        await run_blocking(autoscalers.resume_target_scaler, self._api, canary)
        await run_blocking(self._scale_from_zero, canary, kind)

    async def scale_to_zero(self, target: ReleaseTarget) -> None:
        canary = target.canary
        kind = _kind(canary)
        await run_blocking(autoscalers.pause_target_scaler, self._api, canary)
        await run_blocking(self._scale_to_zero, canary, kind)

    async def promote(self, target: ReleaseTarget) -> None:
        canary = target.canary
        kind = _kind(canary)
        canary_owner = await run_blocking(self._owner, canary)
        await run_blocking(self._promote, canary, kind, canary_owner)
        await run_blocking(
            autoscalers.reconcile_primary_scaler,
            self._api,
            canary,
            owner=canary_owner,
            include_label_prefixes=self._include,
            init=False,
        )

    async def finalize(self, target: ReleaseTarget) -> None:
        """Flagger's revertOnDeletion (§2.11), for a deleted Canary: the target gets the primary's replicas back
        (a DaemonSet loses the scale-to-zero node selector), its KEDA ScaledObject is resumed and an apex service
        the Canary did not create selects the target's pods again. Generated objects are left to the garbage
        collector (their owner is the Canary)."""
        canary = target.canary
        kind = _kind(canary)
        await run_blocking(autoscalers.resume_target_scaler, self._api, canary)
        await run_blocking(self._restore_target, canary, kind)
        await run_blocking(self._revert_apex, canary, kind)

    # ------------------------------------------------------------------------------------------------------
    # Steps (blocking: each runs in a thread)

    def _restore_target(self, canary: Canary, kind: WorkloadKind) -> None:
        namespace, target_name = canary.metadata.namespace, canary.spec.target_ref.name
        if not kind.scalable:
            daemonsets.set_scaled_to_zero(self._api, namespace, target_name, False)
            return
        primary = rest.read_optional(self._api, kind.resource, namespace, primary_name(target_name))
        if primary is not None:
            replicas = int(primary["spec"].get("replicas") or 1)
        else:  # never bootstrapped: Flagger's scale-from-zero count, without a primary to copy
            current = int(rest.read(self._api, kind.resource, namespace, target_name)["spec"].get("replicas") or 0)
            minimum = autoscalers.scaler_min_replicas(self._api, canary) or 1
            replicas = current or max(minimum, 1)
        deployments.scale(self._api, namespace, target_name, replicas)

    def _revert_apex(self, canary: Canary, kind: WorkloadKind) -> None:
        target = rest.read(self._api, kind.resource, canary.metadata.namespace, canary.spec.target_ref.name)
        key, value = selector_label(target, self._selector_labels)
        services.revert_apex_service(self._api, canary, key, value, extra_ports=self._extra_ports(canary, target))

    @staticmethod
    def _extra_ports(canary: Canary, target: rest.JsonObject) -> dict[str, int]:
        service = canary.spec.service
        if not service.port_discovery:
            return {}
        return services.discovered_ports(service, target["spec"]["template"].get("spec", {}).get("containers") or [])

    def _owner(self, canary: Canary) -> dict[str, Any] | None:
        return owner.controller_reference(owner.find_canary_object(self._api, canary))

    def _tracked(self, canary: Canary, target: rest.JsonObject) -> dict[str, configs.ConfigRef]:
        if not self._config_tracking:
            return {}
        return configs.target_configs(self._api, canary.metadata.namespace, target["spec"]["template"])

    def _sync_configs(
        self, canary: Canary, refs: dict[str, configs.ConfigRef], canary_owner: dict[str, Any] | None
    ) -> None:
        configs.sync_primary_configs(
            self._api,
            canary.metadata.namespace,
            refs,
            owner=canary_owner,
            canary_name=canary.metadata.name,
            include_label_prefixes=self._include,
        )

    def _bootstrap(self, canary: Canary, kind: WorkloadKind) -> _Bootstrap:
        namespace, target_name = canary.metadata.namespace, canary.spec.target_ref.name
        target = rest.read(self._api, kind.resource, namespace, target_name)
        if kind is daemonsets.DAEMONSET:
            daemonsets.check_update_strategy(target)
        selector = Selector(*selector_label(target, self._selector_labels))
        canary_owner = self._owner(canary)
        primary_created = False

        def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
            nonlocal primary_created
            if current is not None:
                return None
            primary_created = True
            # Built only for a missing primary (one read of it); its `-primary` config copies must exist first.
            refs = self._tracked(canary, target)
            self._sync_configs(canary, refs, canary_owner)
            return new_primary(
                kind,
                target,
                primary_template(kind, target, refs, selector, self._selector_labels),
                selector,
                include_label_prefixes=self._include,
                owner=canary_owner,
                revision=template_and_configs_revision(target["spec"]["template"], configs.as_tracked(refs)),
            )

        rest.upsert(self._api, kind.resource, namespace, primary_name(target_name), build)
        autoscalers.reconcile_primary_scaler(
            self._api, canary, owner=canary_owner, include_label_prefixes=self._include, init=True
        )
        extra_ports = self._extra_ports(canary, target)
        services.reconcile_canary_and_primary_services(
            self._api, canary, selector.key, selector.value, extra_ports=extra_ports, owner=canary_owner
        )
        return _Bootstrap(
            selector=selector, extra_ports=extra_ports, owner=canary_owner, primary_created=primary_created
        )

    def _finish_initialize(self, target: ReleaseTarget, kind: WorkloadKind, boot: _Bootstrap) -> InitializeResult:
        canary = target.canary
        namespace, target_name = canary.metadata.namespace, canary.spec.target_ref.name
        apex_switched = services.reconcile_apex_service(
            self._api, canary, boot.selector.key, boot.selector.value, extra_ports=boot.extra_ports, owner=boot.owner
        )
        # Bootstrapping ends by pointing the apex service at the primary: until then (this call or an earlier
        # attempt that stopped early) the release is on its first sight of the target.
        bootstrapped = boot.primary_created or apex_switched
        image_changed = False
        if target.image:
            image_changed = self._set_image(canary, kind, target.image)
        workload = rest.read(self._api, kind.resource, namespace, target_name)
        revision = template_and_configs_revision(
            workload["spec"]["template"], configs.as_tracked(self._tracked(canary, workload))
        )
        primary = rest.read(self._api, kind.resource, namespace, primary_name(target_name))
        primary_revision = recorded_revision(primary)
        needs_analysis = revision != primary_revision
        if bootstrapped or not needs_analysis:
            autoscalers.pause_target_scaler(self._api, canary)
            self._scale_to_zero(canary, kind)
        parts = [f"{kind.resource.kind} {primary_name(target_name)}.{namespace} bootstrapped"] if bootstrapped else []
        if image_changed:
            parts.append(f"image {target.image} set on {target_name}")
        if needs_analysis:
            parts.append(f"new revision {revision} (primary runs {primary_revision or 'an unrecorded revision'})")
        else:
            parts.append(f"{target_name} runs the primary's revision {revision}")
        return InitializeResult(
            needs_analysis=needs_analysis, primary_bootstrapped=bootstrapped, message="; ".join(parts)
        )

    def _set_image(self, canary: Canary, kind: WorkloadKind, image: str) -> bool:
        changed = False

        def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
            nonlocal changed
            if current is None:
                return None
            pod_spec = current["spec"]["template"].setdefault("spec", {})
            changed = set_container_image(pod_spec, image)
            return current if changed else None

        rest.upsert(self._api, kind.resource, canary.metadata.namespace, canary.spec.target_ref.name, build)
        return changed

    def _scale_to_zero(self, canary: Canary, kind: WorkloadKind) -> None:
        namespace, name = canary.metadata.namespace, canary.spec.target_ref.name
        if kind.scalable:
            deployments.scale(self._api, namespace, name, 0)
        else:
            daemonsets.set_scaled_to_zero(self._api, namespace, name, True)

    def _scale_from_zero(self, canary: Canary, kind: WorkloadKind) -> None:
        namespace, name = canary.metadata.namespace, canary.spec.target_ref.name
        if kind.scalable:
            deployments.scale(self._api, namespace, name, deployments.scale_up_replicas(self._api, canary))
        else:
            daemonsets.set_scaled_to_zero(self._api, namespace, name, False)

    def _promote(self, canary: Canary, kind: WorkloadKind, canary_owner: dict[str, Any] | None) -> None:
        namespace, target_name = canary.metadata.namespace, canary.spec.target_ref.name

        def attempt() -> None:
            target = rest.read(self._api, kind.resource, namespace, target_name)
            selector = Selector(*selector_label(target, self._selector_labels))
            primary = rest.read(self._api, kind.resource, namespace, primary_name(target_name))
            refs = self._tracked(canary, target)
            self._sync_configs(canary, refs, canary_owner)
            promoted = promoted_primary(
                kind,
                target,
                primary,
                primary_template(kind, target, refs, selector, self._selector_labels),
                selector,
                include_label_prefixes=self._include,
                copy_replicas=canary.spec.autoscaler_ref is None,
                revision=template_and_configs_revision(target["spec"]["template"], configs.as_tracked(refs)),
            )
            if promoted is not None:
                rest.replace(self._api, kind.resource, namespace, promoted)

        retry_on_conflict(attempt)

    # ------------------------------------------------------------------------------------------------------
    # Readiness

    @staticmethod
    def _readiness(
        kind: WorkloadKind, workload: rest.JsonObject, threshold: int, deadline: int, started_at: float
    ) -> Readiness:
        check = deployment_readiness if kind.scalable else daemonset_readiness
        return check(
            workload, threshold_percent=threshold, deadline_seconds=deadline, started_at=started_at, now=time.time()
        )

    @staticmethod
    def _not_ready_message(kind: WorkloadKind, role: str, name: str, namespace: str, reason: str) -> str:
        if kind.scalable:
            prefix = f"{name}.{namespace}" if role == "primary" else f"canary deployment {name}.{namespace}"
        else:
            prefix = f"{role} daemonset {name}.{namespace}"
        return f"{prefix} not ready: {reason}"

    async def _wait_primary_ready(self, canary: Canary, kind: WorkloadKind) -> None:
        """Wait (bounded) until the primary is ready, so the apex service and the scale-down cause no downtime."""
        analysis = canary.spec.analysis
        threshold = analysis.primary_ready_threshold if analysis else 100
        namespace, name = canary.metadata.namespace, primary_name(canary.spec.target_ref.name)
        give_up = time.monotonic() + self._primary_ready_wait
        while True:
            primary = await run_blocking(rest.read, self._api, kind.resource, namespace, name)
            readiness = self._readiness(kind, primary, threshold, canary.spec.progress_deadline_seconds, 0.0)
            if readiness.ready:
                return
            message = self._not_ready_message(kind, "primary", name, namespace, readiness.message)
            if not readiness.retryable:
                raise ApplicationError(message, type=ERR_PROGRESS_DEADLINE, non_retryable=True)
            if time.monotonic() >= give_up:
                raise ApplicationError(message, type=ERR_NOT_READY)
            if activity.in_activity():
                activity.heartbeat(message)
            await asyncio.sleep(self._poll)
