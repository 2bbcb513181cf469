"""`FakeKube`: the in-memory API server in a background thread, plus direct store access for tests."""

from __future__ import annotations

import asyncio
import copy
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from . import errors
from .crds import fixture_crds
from .faults import Fault, FaultInjector, RecordedRequest
from .kinds import ResourceType
from .server import ApiServer
from .store import Obj, Store

if TYPE_CHECKING:
    from kubernetes import client as k8s

    from .kubelet import Kubelet

BASE_NAMESPACES = ("default", "kube-system")
_CRD_API_VERSION = "apiextensions.k8s.io/v1"


class FakeKube:
    """A faithful-enough kube-apiserver on http://127.0.0.1:<port>, for the real `kubernetes` client and kubectl."""

    def __init__(self, *, compact_after_events: int = 1000) -> None:
        self.store = Store(compact_after_events)
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self.kubelet: Kubelet | None = None
        self.url = ""
        self._server = ApiServer(self.store, self.faults, self.requests)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._create_base_namespaces()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve in a background thread with its own event loop; returns the base URL."""
        if self._loop is not None:
            return self.url
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(port))
            except BaseException as error:  # surfaced to the caller of start()
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fakekube", daemon=True)
        self._thread.start()
        started.wait(timeout=10)
        if failure:
            raise failure[0]
        return self.url

    async def _serve(self, port: int) -> None:
        self._runner = web.AppRunner(self._server.application(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound_port}"

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        loop.call_soon_threadsafe(self._server.stop_watches)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = self._runner = self._thread = None

    def reset(self) -> None:
        """Drop every object, CRD, fault, controller and recorded request; keep the port."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._server.stop_watches)
        self.store.reset()
        self.faults.clear()
        self.requests.clear()
        self.kubelet = None
        self._create_base_namespaces()

    def _create_base_namespaces(self) -> None:
        for name in BASE_NAMESPACES:
            self.create_namespace(name)

    # -- clients -----------------------------------------------------------------------------------------------

    def api_client(self) -> k8s.ApiClient:
        """A new sync ApiClient pointed at this server."""
        from kubernetes import client as k8s  # imported here so `python -m tests.fakekube` starts fast

        configuration = k8s.Configuration(host=self.url)
        return k8s.ApiClient(configuration)

    def write_kubeconfig(self, path: Path, *, context: str = "fakekube", namespace: str = "default") -> Path:
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": {"token": "fakekube"}}],
            "contexts": [
                {"name": context, "context": {"cluster": "fakekube", "user": "fakekube", "namespace": namespace}}
            ],
            "current-context": context,
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        return path

    # -- direct store access -----------------------------------------------------------------------------------

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        with self.store.lock:
            resource_type = self.store.registry.by_kind(api_version, kind)
        if resource_type is None:
            raise ValueError(f"{kind} of {api_version} is not served (register its CRD first)")
        return resource_type

    def create_namespace(self, name: str) -> Obj:
        namespace_type = self.resource_type("v1", "Namespace")
        existing = self.get("v1", "Namespace", name)
        if existing is not None:
            return existing
        return self.store.create(namespace_type, None, {"metadata": {"name": name}})

    def register_crd(self, crd: Obj) -> None:
        """Same effect as POSTing the CRD (replaces one of the same name)."""
        crd_type = self.resource_type(_CRD_API_VERSION, "CustomResourceDefinition")
        name = crd.get("metadata", {}).get("name", "")
        body = copy.deepcopy(crd)
        body.get("metadata", {}).pop("resourceVersion", None)
        with self.store.lock:
            existing = self.get(_CRD_API_VERSION, "CustomResourceDefinition", name)
            if existing is None:
                self.store.create(crd_type, None, body)
            else:
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                self.store.replace(crd_type, None, name, body)

    def register_fixture_crds(self, *names: str) -> None:
        """istio, smi, gatewayapi, keda, keptn, canaryflow (flagger.app + canaryflow.dev); none named = all."""
        for crd in fixture_crds(*names):
            self.register_crd(crd)

    def seed(self, obj: Obj) -> Obj:
        """Store `obj` directly (creating its namespace if needed); the server fills metadata.

        An existing object of the same name is replaced. A given `.status` is kept as is and the simulated
        controllers are not run for it; without one they run as on any write.
        """
        resource_type = self.resource_type(obj.get("apiVersion", ""), obj.get("kind", ""))
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        namespace = meta.get("namespace") or "default" if resource_type.namespaced else None
        has_status = "status" in body
        with self.store.lock:
            if namespace is not None:
                self.create_namespace(namespace)
            existing = self.store.objects.get(self.store.key(resource_type, namespace, meta.get("name", "")))
            if existing is None:
                return self.store.create(
                    resource_type, namespace, body, keep_status=has_status, run_hooks=not has_status
                )
            stored = self.store.replace(
                resource_type,
                namespace,
                meta["name"],
                {**body, "metadata": {**meta, "resourceVersion": existing["metadata"]["resourceVersion"]}},
            )
            if has_status and resource_type.has_status:
                stored = self.store.write_status(resource_type, namespace, meta["name"], body["status"])
            return stored

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        resource_type = self.resource_type(api_version, kind)
        try:
            return self.store.get(resource_type, namespace or ("default" if resource_type.namespaced else None), name)
        except errors.ApiError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.store.list(self.resource_type(api_version, kind), namespace)[0]

    # -- test hooks --------------------------------------------------------------------------------------------

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 500,
        reason: str = "InternalError",
        times: int = 1,
        delay_seconds: float = 0.0,
    ) -> None:
        """The next `times` requests matching method ("*" = any) and path regex answer `status`/`reason`.

        A status below 400 only delays them by `delay_seconds` before they are served normally.
        """
        self.faults.add(
            Fault(
                method.upper() if method != "*" else "*", re.compile(path_regex), status, reason, times, delay_seconds
            )
        )

    def __enter__(self) -> FakeKube:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
