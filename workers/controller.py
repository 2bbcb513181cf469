"""The canaryflow controller: Canary resources on a cluster start and steer their releases.

It watches Canaries (`canaryflow.dev/v1beta1`; `flagger.app/v1beta1` too when asked, for a side-by-side
migration), their target Deployments/DaemonSets and the ConfigMaps/Secrets they may mount. Every watch restarts
after `resync_seconds` and lists everything again, so a missed event is made good within one resync.

Per Canary (`reconcile`):
- deleted with our finalizer and `revertOnDeletion` -> cancel the running release, revert the target and the apex
  Service (Flagger's finalizer), remove the finalizer;
- finalizer added when `revertOnDeletion` is set, removed when it is unset;
- a Canary without status conditions shows `Initializing` at once (Flagger's syncHandler);
- `spec.suspend` -> no new release; a running one is paused (Flagger's suspended canary stops advancing) and
  resumed when the suspension is lifted;
- the target's revision (`workload_revision`: pod template + tracked configs) differs from
  `status.lastAppliedSpec` and from `status.lastPromotedSpec`, and is not the revision of the latest release of
  this Canary -> `start_release` (signal-with-start).

Several replicas can run at once: the workflow id makes one release per Canary, signal-with-start delivers to the
running one, and the workflow ignores a revision it already has. The status and Events themselves are written by
the workers' Kubernetes status sink, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.kube.client import is_not_found, load_api_client, retry_on_conflict
from activities.kube.labels import KUBECTL_LAST_APPLIED_ANNOTATION
from activities.kube.names import apex_service_name
from activities.kube.revision import workload_revision
from activities.status.kubernetes import CANARY_PLURAL, build_conditions, canary_event, kube_time
from canaryflow import shared
from canaryflow.client import release_handle, send_command, start_release
from canaryflow.kube_release import targets_cluster
from canaryflow.loader import SpecError, parse_resource
from canaryflow.settings import Settings
from canaryflow.spec import AlertProvider, Canary, MetricTemplate
from workflows.model import Command, ReleaseRequest, ReleaseResult
from workflows.release import CanaryRelease

log = logging.getLogger("canaryflow.controller")

CANARYFLOW_GROUP = "canaryflow.dev"
FLAGGER_GROUP = "flagger.app"
CANARY_VERSION = "v1beta1"
FINALIZER = "finalizer.canaryflow.dev"
CONTROLLER_IDENTITY = "canaryflow-controller"
SUSPEND_REASON = "spec.suspend"
SUSPENDED_MESSAGE = "skipping canary run as object is suspended"  # Flagger's event text
SCALE_TO_ZERO_NODE_SELECTOR_KEY = "flagger.app/scale-to-zero"
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
_QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True, order=True)
class CanaryKey:
    group: str
    namespace: str
    name: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{CANARY_VERSION}"


@dataclass
class _Seen:
    """What the watches last saw of a Canary, to ignore its status-only updates and to map targets to Canaries."""

    generation: int | None = None
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    target: tuple[str, str] = ("", "")  # (kind, name)


@dataclass
class ControllerOptions:
    groups: tuple[str, ...] = (CANARYFLOW_GROUP,)
    namespace: str | None = None  # None: all namespaces
    resync_seconds: float = 30.0
    workers: int = 2
    identity: str = CONTROLLER_IDENTITY
    cancel_wait_seconds: float = 20.0  # how long one finalizer pass waits for a cancelled release to roll back
    watch_configs: bool = True


@dataclass
class _Memo:
    """This replica's memory of what it asked for (other replicas are covered by the server and the workflow)."""

    sent_revision: dict[CanaryKey, str] = field(default_factory=dict)
    suspended: dict[CanaryKey, bool] = field(default_factory=dict)


def now_kube() -> str:
    return kube_time(datetime.now(UTC))


class CanaryController:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        temporal: Client,
        settings: Settings,
        options: ControllerOptions | None = None,
    ) -> None:
        self._api = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._temporal = temporal
        self._settings = settings
        self._options = options or ControllerOptions()
        self._seen: dict[CanaryKey, _Seen] = {}
        self._target_generations: dict[tuple[str, str, str], int | None] = {}
        self._config_versions: dict[tuple[str, str, str], str] = {}
        self._memo = _Memo()
        self._queue: asyncio.Queue[CanaryKey] = asyncio.Queue()
        self._queued: set[CanaryKey] = set()
        self._active: set[CanaryKey] = set()
        self._again: set[CanaryKey] = set()
        self._stopping = threading.Event()
        self._watches: set[k8s_watch.Watch] = set()
        self._watches_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reconciled = 0  # reconciles done (tests and logs)

    # ------------------------------------------------------------------------------------------------------------
    # Running

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and reconcile until `stop` is set."""
        self._loop = asyncio.get_running_loop()
        threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in self._watch_loops()]
        for thread in threads:
            thread.start()
        workers = [asyncio.create_task(self._work()) for _ in range(max(1, self._options.workers))]
        log.info("controller watching %s in %s", ", ".join(self._options.groups), self._options.namespace or "all")
        try:
            await stop.wait()
        finally:
            self._stopping.set()
            with self._watches_lock:
                for active in self._watches:
                    active.stop()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            # A watch thread blocked in a read ends with the server's timeout; they are daemons, so wait briefly.
            await asyncio.to_thread(_join_all, threads, 2.0)

    def enqueue(self, key: CanaryKey) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                outcome = await self.reconcile(key)
                log.debug("%s/%s: %s", key.namespace, key.name, outcome)
            except Exception:
                log.exception("reconcile of canary %s/%s failed", key.namespace, key.name)
            finally:
                self._active.discard(key)
                self.reconciled += 1
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)

    # ------------------------------------------------------------------------------------------------------------
    # Watches (the kubernetes client is synchronous: one thread per watch, events handed to the loop)

    def _watch_loops(self) -> list[tuple[str, Callable[[], None]]]:
        watches: list[tuple[str, Callable[..., Any], Callable[[str, dict[str, Any], str], None], str]] = [
            (f"canaries-{group}", self._canary_lister(group), self._on_canary, group) for group in self._options.groups
        ]
        watches.append(("deployments", self._lister(self._apps, "deployment"), self._on_target, "Deployment"))
        watches.append(("daemonsets", self._lister(self._apps, "daemon_set"), self._on_target, "DaemonSet"))
        if self._options.watch_configs:
            watches.append(("configmaps", self._lister(self._core, "config_map"), self._on_config, "configmap"))
            watches.append(("secrets", self._lister(self._core, "secret"), self._on_config, "secret"))
        return [
            (f"watch-{name}", functools.partial(self._watch_forever, lister, handler, tag))
            for name, lister, handler, tag in watches
        ]

    def _canary_lister(self, group: str) -> Callable[..., Any]:
        namespace = self._options.namespace
        if namespace:
            return lambda **kw: self._custom.list_namespaced_custom_object(
                group, CANARY_VERSION, namespace, CANARY_PLURAL, **kw
            )
        return lambda **kw: self._custom.list_cluster_custom_object(group, CANARY_VERSION, CANARY_PLURAL, **kw)

    def _lister(self, api: Any, noun: str) -> Callable[..., Any]:
        namespace = self._options.namespace
        if namespace:
            method = getattr(api, f"list_namespaced_{noun}")
            return lambda **kw: method(namespace, **kw)
        return getattr(api, f"list_{noun}_for_all_namespaces")  # type: ignore[no-any-return]

    def _watch_forever(
        self, lister: Callable[..., Any], handler: Callable[[str, dict[str, Any], str], None], tag: str
    ) -> None:
        """List+watch until stopped; each round ends after resync_seconds and starts with a full list (a resync)."""
        timeout = max(1, int(self._options.resync_seconds))
        while not self._stopping.is_set():
            stream = k8s_watch.Watch()
            with self._watches_lock:
                self._watches.add(stream)
            try:
                for event in self._stream(stream, lister, timeout):
                    if self._stopping.is_set():
                        break
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Expired: start over with a fresh list
                    obj = event.get("raw_object") or event.get("object")
                    if isinstance(obj, dict) and self._loop is not None:
                        self._loop.call_soon_threadsafe(handler, str(event.get("type")), obj, tag)
            except Exception as error:  # API down, watch broken: retry after a pause
                if not self._stopping.is_set():
                    log.warning("watch %s failed: %s", tag, error)
                    self._stopping.wait(min(5.0, self._options.resync_seconds))
            finally:
                with self._watches_lock:
                    self._watches.discard(stream)

    @staticmethod
    def _stream(stream: k8s_watch.Watch, lister: Callable[..., Any], timeout: int) -> Iterator[dict[str, Any]]:
        yield from stream.stream(lister, timeout_seconds=timeout, _request_timeout=timeout + 10)

    def _on_canary(self, kind: str, obj: dict[str, Any], group: str) -> None:
        metadata = obj.get("metadata", {})
        key = CanaryKey(group, metadata.get("namespace", "default"), metadata.get("name", ""))
        target = (obj.get("spec") or {}).get("targetRef") or {}
        seen = _Seen(
            generation=metadata.get("generation"),
            deleting=bool(metadata.get("deletionTimestamp")),
            finalizers=tuple(metadata.get("finalizers") or ()),
            target=(str(target.get("kind", "")), str(target.get("name", ""))),
        )
        if kind == "DELETED":
            self._seen.pop(key, None)
            self.enqueue(key)
            return
        previous = self._seen.get(key)
        self._seen[key] = seen
        # Status-only updates (our own status writes) change neither generation, deletion nor finalizers.
        if kind == "ADDED" or previous != seen:
            self.enqueue(key)

    def _on_target(self, kind: str, obj: dict[str, Any], target_kind: str) -> None:
        metadata = obj.get("metadata", {})
        namespace, name = metadata.get("namespace", "default"), metadata.get("name", "")
        ident = (target_kind, namespace, name)
        generation = metadata.get("generation")
        known = ident in self._target_generations
        if kind == "DELETED":
            self._target_generations.pop(ident, None)
        else:
            if known and self._target_generations[ident] == generation:
                return  # a status update (rollout progress), not a spec change
            self._target_generations[ident] = generation
        if not known and kind == "ADDED":
            return  # first sight (or a resync): the Canary resync covers it
        for key, seen in list(self._seen.items()):
            if key.namespace == namespace and seen.target == (target_kind, name):
                self.enqueue(key)

    def _on_config(self, kind: str, obj: dict[str, Any], config_kind: str) -> None:
        metadata = obj.get("metadata", {})
        namespace = metadata.get("namespace", "default")
        ident = (config_kind, namespace, metadata.get("name", ""))
        version = str(metadata.get("resourceVersion", ""))
        known = ident in self._config_versions
        if kind == "DELETED":
            self._config_versions.pop(ident, None)
        else:
            if known and self._config_versions[ident] == version:
                return
            self._config_versions[ident] = version
            if not known and kind == "ADDED":
                return
        # Which configs a target mounts is only known after reading it: let every Canary of the namespace look.
        for key in list(self._seen):
            if key.namespace == namespace:
                self.enqueue(key)

    # ------------------------------------------------------------------------------------------------------------
    # Reconcile

    async def reconcile(self, key: CanaryKey) -> str:
        """Bring one Canary's release in line with the cluster; returns what it did (for logs and tests)."""
        raw = await asyncio.to_thread(self._read_canary, key)
        if raw is None:
            return await self._forget(key)
        try:
            resource = parse_resource(raw, f"{key.group} canary {key.namespace}/{key.name}")
        except SpecError as error:
            log.warning("invalid canary %s/%s: %s", key.namespace, key.name, error)
            return "invalid"
        if not isinstance(resource, Canary):
            return "invalid"
        canary = resource
        metadata = raw.get("metadata", {})
        finalizers = list(metadata.get("finalizers") or [])
        if metadata.get("deletionTimestamp"):
            if FINALIZER in finalizers:
                return await self._finalize(key, raw, canary)
            return "deleting"
        if not targets_cluster(canary):
            return "unsupported-target"
        if canary.spec.revert_on_deletion and FINALIZER not in finalizers:
            await asyncio.to_thread(self._set_finalizer, key, True)
        elif not canary.spec.revert_on_deletion and FINALIZER in finalizers:
            await asyncio.to_thread(self._set_finalizer, key, False)
        status = raw.get("status") or {}
        if not status.get("conditions"):
            # Flagger's syncHandler: a new Canary shows phase Initializing at once (only if nobody wrote status).
            await asyncio.to_thread(self._write_phase, key, raw, "Initializing", canary.spec.target_ref.kind)
        description = await self._describe(key)
        running = _is_running(description)
        if canary.spec.suspend:
            return await self._suspend(key, raw, running)
        await self._lift_suspension(key, running)
        try:
            revision = await asyncio.to_thread(workload_revision, self._api, canary)
        except ApiException as error:
            if is_not_found(error):
                log.info("canary %s/%s: target or a mandatory config is missing", key.namespace, key.name)
                return "target-missing"
            raise
        if revision in (status.get("lastAppliedSpec"), status.get("lastPromotedSpec")):
            return "up-to-date"
        if self._latest_release_has(description, revision, raw):
            return "release-has-revision"
        if running and self._memo.sent_revision.get(key) == revision:
            return "already-sent"
        request = await self._request(key, canary, revision)
        started = await start_release(
            self._temporal,
            request,
            task_queue=self._settings.task_queue,
            cluster=self._settings.cluster_name,
            default_provider=self._settings.mesh_provider,
        )
        self._memo.sent_revision[key] = revision
        log.info("canary %s/%s: revision %s -> release %s", key.namespace, key.name, revision, started.workflow_id)
        return "signalled" if running else "started"

    def _read_canary(self, key: CanaryKey) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._custom.get_namespaced_custom_object(
                key.group, CANARY_VERSION, key.namespace, CANARY_PLURAL, key.name
            )
        except ApiException as error:
            if is_not_found(error):
                return None
            raise
        return obj

    def _handle(self, key: CanaryKey) -> WorkflowHandle[CanaryRelease, ReleaseResult]:
        return release_handle(self._temporal, key.namespace, key.name, self._settings.cluster_name)

    async def _describe(self, key: CanaryKey) -> WorkflowExecutionDescription | None:
        try:
            return await self._handle(key).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _release_running(self, key: CanaryKey) -> bool:
        return _is_running(await self._describe(key))

    @staticmethod
    def _latest_release_has(
        description: WorkflowExecutionDescription | None, revision: str, raw: dict[str, Any]
    ) -> bool:
        """The latest release of this Canary (running or ended) is for `revision` (its status may lag behind).

        A release that started before this Canary object was created belongs to an earlier object of that name.
        """
        if description is None:
            return False
        if description.typed_search_attributes.get(shared.SA_REVISION) != revision[:250]:
            return False
        created = raw.get("metadata", {}).get("creationTimestamp")
        if created and description.start_time is not None:
            created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
            if description.start_time.replace(microsecond=0) < created_at:
                return False
        return True

    async def _request(self, key: CanaryKey, canary: Canary, revision: str) -> ReleaseRequest:
        templates, providers = await asyncio.to_thread(self._resolve_references, key, canary)
        target = canary.spec.target_ref
        return ReleaseRequest(
            canary=canary,
            revision=revision,
            metric_templates=templates,
            alert_providers=providers,
            requested_by=self._options.identity,
            reason=f"new revision of {target.kind}/{target.name} detected",
            min_interval_seconds=self._settings.min_interval_seconds,
        )

    def _resolve_references(
        self, key: CanaryKey, canary: Canary
    ) -> tuple[dict[str, MetricTemplate], dict[str, AlertProvider]]:
        """MetricTemplates and AlertProviders the Canary refers to, read from the cluster (missing ones left out:
        the release reports them when it needs them, like Flagger)."""
        templates: dict[str, MetricTemplate] = {}
        providers: dict[str, AlertProvider] = {}
        analysis = canary.spec.analysis
        if analysis is None:
            return templates, providers
        namespace = canary.metadata.namespace
        for metric in analysis.metrics:
            if metric.template_ref is not None:
                ref_ns = metric.template_ref.namespace or namespace
                found = self._read_resource(key.group, "metrictemplates", ref_ns, metric.template_ref.name)
                if isinstance(found, MetricTemplate):
                    templates[f"{ref_ns}/{metric.template_ref.name}"] = found
        for alert in analysis.alerts:
            ref_ns = alert.provider_ref.namespace or namespace
            found = self._read_resource(key.group, "alertproviders", ref_ns, alert.provider_ref.name)
            if isinstance(found, AlertProvider):
                providers[f"{ref_ns}/{alert.provider_ref.name}"] = found
        return templates, providers

    def _read_resource(self, group: str, plural: str, namespace: str, name: str) -> Any:
        # The Canary's own group first, then the other one (a migration may have moved only some objects).
        groups = [group] + [g for g in (CANARYFLOW_GROUP, FLAGGER_GROUP) if g != group]
        for candidate in groups:
            try:
                raw = self._custom.get_namespaced_custom_object(candidate, CANARY_VERSION, namespace, plural, name)
            except ApiException as error:
                if is_not_found(error):
                    continue
                raise
            try:
                return parse_resource(raw, f"{candidate} {plural} {namespace}/{name}")
            except SpecError as error:
                log.warning("invalid %s %s/%s: %s", plural, namespace, name, error)
                return None
        return None

    # -- status written by the controller (before a release exists, and while finalizing) -------------------------

    def _write_phase(self, key: CanaryKey, raw: dict[str, Any], phase: str, target_kind: str) -> None:
        now = now_kube()
        status = dict(raw.get("status") or {})
        status.update(
            phase=phase,
            canaryWeight=0,
            iterations=0,
            lastTransitionTime=now,
            conditions=build_conditions(status.get("conditions"), phase, target_kind, now),
        )
        body = {
            "apiVersion": key.api_version,
            "kind": "Canary",
            "metadata": {
                "name": key.name,
                "namespace": key.namespace,
                "resourceVersion": raw["metadata"]["resourceVersion"],
            },
            "status": status,
        }
        try:
            self._custom.replace_namespaced_custom_object_status(
                key.group, CANARY_VERSION, key.namespace, CANARY_PLURAL, key.name, body
            )
        except ApiException as error:
            if error.status not in (404, 409):  # 404 gone, 409 someone (the status sink) wrote first: theirs is newer
                raise

    def _event(self, key: CanaryKey, raw: dict[str, Any], message: str, *, unique: str, warning: bool = False) -> None:
        """A Flagger-style Event; `unique` makes its name deterministic so replicas and retries create it once."""
        digest = hashlib.sha256(f"{raw.get('metadata', {}).get('uid')}|{unique}".encode()).hexdigest()[:16]
        body = canary_event(
            raw,
            name=f"{key.name[:200]}.{digest}",
            message=message,
            warning=warning,
            at=now_kube(),
            reporter=("canaryflow.dev/controller", self._options.identity),
        )
        try:
            self._core.create_namespaced_event(key.namespace, body)
        except ApiException as error:
            if error.status != 409:
                log.warning("event for %s/%s not recorded: %s", key.namespace, key.name, error.reason)

    # -- finalizer -------------------------------------------------------------------------------------------------

    def _set_finalizer(self, key: CanaryKey, present: bool) -> None:
        def write() -> None:
            raw = self._read_canary(key)
            if raw is None:
                return
            finalizers = [f for f in raw["metadata"].get("finalizers") or [] if f != FINALIZER]
            if present:
                finalizers.append(FINALIZER)
            if finalizers == list(raw["metadata"].get("finalizers") or []):
                return
            patch = {
                "metadata": {"resourceVersion": raw["metadata"]["resourceVersion"], "finalizers": finalizers or None}
            }
            self._custom.patch_namespaced_custom_object(
                key.group, CANARY_VERSION, key.namespace, CANARY_PLURAL, key.name, patch
            )

        try:
            retry_on_conflict(write)
        except ApiException as error:
            if not is_not_found(error):
                raise

    async def _finalize(self, key: CanaryKey, raw: dict[str, Any], canary: Canary) -> str:
        """Flagger's revertOnDeletion: stop the release, give the target its traffic back, then let the object go.

        The revert waits until the cancelled release has rolled back: a rollback running after it would scale the
        target to zero again. Until then the finalizer stays and the next resync tries again.
        """
        if (raw.get("status") or {}).get("phase") != "Terminating":
            await asyncio.to_thread(
                self._event, key, raw, f"Terminating canary {key.name}.{key.namespace}", unique="terminating"
            )
        if not await self._cancel_release(key, "Canary deleted with revertOnDeletion"):
            return "waiting-for-release"
        if (raw.get("status") or {}).get("phase") != "Terminating":
            fresh = await asyncio.to_thread(self._read_canary, key)
            if fresh is not None:  # written after the release's last report, which would overwrite it
                await asyncio.to_thread(self._write_phase, key, fresh, "Terminating", canary.spec.target_ref.kind)
        await asyncio.to_thread(self._revert_target, canary)
        await asyncio.to_thread(self._revert_apex_service, canary)
        await asyncio.to_thread(self._set_finalizer, key, False)
        await asyncio.to_thread(
            self._event, key, raw, f"Terminated canary {key.name}.{key.namespace}", unique="terminated"
        )
        self._memo.sent_revision.pop(key, None)
        return "finalized"

    async def _cancel_release(self, key: CanaryKey, reason: str) -> bool:
        """Cancel the running release (it rolls back: traffic to the primary); True once no release runs."""
        if not await self._release_running(key):
            return True
        await self._handle(key).cancel(reason=reason)
        try:
            await asyncio.wait_for(self._wait_closed(key), self._options.cancel_wait_seconds)
        except TimeoutError:
            log.warning(
                "release of %s/%s still running %ss after its cancellation (no worker?): retrying later",
                key.namespace,
                key.name,
                self._options.cancel_wait_seconds,
            )
            return False
        return True

    async def _wait_closed(self, key: CanaryKey) -> None:
        while await self._release_running(key):
            await asyncio.sleep(0.5)

    def _revert_target(self, canary: Canary) -> None:
        """Flagger's Finalize: a Deployment gets the primary's replicas (scaled from zero when there is no primary);
        a DaemonSet loses the scale-to-zero node selector."""
        namespace, name = canary.metadata.namespace, canary.spec.target_ref.name
        try:
            if canary.spec.target_ref.kind == "DaemonSet":
                daemon_set = self._api.sanitize_for_serialization(
                    self._apps.read_namespaced_daemon_set(name, namespace)
                )
                selector = daemon_set["spec"]["template"]["spec"].get("nodeSelector") or {}
                if SCALE_TO_ZERO_NODE_SELECTOR_KEY in selector:
                    patch = {"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR_KEY: None}}}}}
                    self._apps.patch_namespaced_daemon_set(name, namespace, patch)
                return
            target = self._apps.read_namespaced_deployment(name, namespace)
            try:
                primary = self._apps.read_namespaced_deployment(f"{name}-primary", namespace)
                replicas = primary.spec.replicas if primary.spec.replicas is not None else 1
            except ApiException as error:
                if not is_not_found(error):
                    raise
                replicas = target.spec.replicas if target.spec.replicas else 1
            if target.spec.replicas != replicas:
                self._apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})
        except ApiException as error:
            if not is_not_found(error):
                raise

    def _revert_apex_service(self, canary: Canary) -> None:
        """Flagger's KubernetesRouter.Finalize: an apex Service the Canary does not own selects the target's pods
        again (its selector from kubectl's last-applied configuration when there is one)."""
        namespace = canary.metadata.namespace
        service_name = apex_service_name(canary)

        def write() -> None:
            try:
                service = self._api.sanitize_for_serialization(
                    self._core.read_namespaced_service(service_name, namespace)
                )
            except ApiException as error:
                if is_not_found(error):
                    return
                raise
            owners = service["metadata"].get("ownerReferences") or []
            if any(o.get("controller") and o.get("kind") == "Canary" for o in owners):
                return  # generated by us: garbage-collected with the Canary
            selector = self._original_selector(service, canary)
            if selector is None or service["spec"].get("selector") == selector:
                return
            service["spec"]["selector"] = selector
            self._core.replace_namespaced_service(service_name, namespace, service)

        retry_on_conflict(write)

    def _original_selector(self, service: dict[str, Any], canary: Canary) -> dict[str, str] | None:
        last_applied = (service["metadata"].get("annotations") or {}).get(KUBECTL_LAST_APPLIED_ANNOTATION)
        if last_applied:
            try:
                selector = json.loads(last_applied).get("spec", {}).get("selector")
                if isinstance(selector, dict):
                    return {str(k): str(v) for k, v in selector.items()}
            except ValueError:
                pass
        target_ref = canary.spec.target_ref
        read = (
            self._apps.read_namespaced_daemon_set
            if target_ref.kind == "DaemonSet"
            else self._apps.read_namespaced_deployment
        )
        try:
            target = self._api.sanitize_for_serialization(read(target_ref.name, canary.metadata.namespace))
        except ApiException as error:
            if is_not_found(error):
                return None
            raise
        match_labels = target["spec"].get("selector", {}).get("matchLabels") or {}
        for label in SELECTOR_LABELS:
            if label in match_labels:
                return {label: str(match_labels[label])}
        return None

    # -- suspension and deletion -----------------------------------------------------------------------------------

    async def _suspend(self, key: CanaryKey, raw: dict[str, Any], running: bool) -> str:
        await asyncio.to_thread(
            self._event, key, raw, SUSPENDED_MESSAGE, unique=f"suspended|{raw['metadata'].get('generation')}"
        )
        self._memo.suspended[key] = True
        if not running:
            return "suspended"
        accepted = await self._command(key, "pause")
        return "suspended-paused" if accepted else "suspended"

    async def _lift_suspension(self, key: CanaryKey, running: bool) -> None:
        """Resume a release this controller paused for `spec.suspend` (checked at start and on every unsuspend)."""
        was_suspended = self._memo.suspended.get(key)
        self._memo.suspended[key] = False
        if not running or was_suspended is False:
            return
        try:
            state = await self._handle(key).query(CanaryRelease.state, rpc_timeout=_QUERY_TIMEOUT)
        except Exception as error:  # no worker right now: try again on the next resync
            self._memo.suspended[key] = True
            log.info("canary %s/%s: release state unavailable (%s)", key.namespace, key.name, error)
            return
        if state.paused and state.paused_by == self._options.identity:
            await self._command(key, "resume")

    async def _command(self, key: CanaryKey, kind: str) -> bool:
        command = Command(identity=self._options.identity, reason=SUSPEND_REASON)
        try:
            result = await send_command(self._handle(key), kind, command)
        except (WorkflowUpdateFailedError, RPCError) as error:  # refused (already paused, promoting...) or ended
            log.info("canary %s/%s: %s not applied: %s", key.namespace, key.name, kind, error)
            return False
        return result.accepted

    async def _forget(self, key: CanaryKey) -> str:
        """The Canary is gone (no finalizer): its release has nothing left to steer, so it is cancelled."""
        self._memo.sent_revision.pop(key, None)
        self._memo.suspended.pop(key, None)
        if any(k.namespace == key.namespace and k.name == key.name for k in self._seen):
            return "gone"  # the same name lives on in the other group
        if not await self._release_running(key):
            return "gone"
        await self._handle(key).cancel(reason="Canary deleted")
        return "gone-cancelled"


def _is_running(description: WorkflowExecutionDescription | None) -> bool:
    return description is not None and description.status == WorkflowExecutionStatus.RUNNING


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


# ----------------------------------------------------------------------------------------------------------------
# Process entry point (`canaryflow controller`)


async def run_controller(settings: Settings, options: ControllerOptions, *, stop: asyncio.Event | None = None) -> None:
    from canaryflow.temporal_client import connect

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: the caller sets `stop`
            loop.add_signal_handler(signum, stop.set)
    api_client = await asyncio.to_thread(load_api_client, settings)
    try:
        temporal = await connect(settings)
        controller = CanaryController(api_client, temporal, settings, options)
        await controller.run(stop)
    finally:
        api_client.close()
