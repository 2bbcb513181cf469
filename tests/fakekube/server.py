"""The HTTP face: URL routing, discovery, request decoding, Status errors, fault injection and the request log."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from . import discovery, errors, table
from .faults import FaultInjector, RecordedRequest
from .kinds import ResourceType
from .selectors import matches_labels, parse_field_selector, parse_label_selector
from .store import Event, Obj, Store
from .watch import WATCH_FLAGS, serve_watch

_HEALTH_PATHS = {"healthz", "readyz", "livez"}


@dataclass(frozen=True)
class Target:
    resource_type: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def _error(error: errors.ApiError) -> web.Response:
    return _json(error.status(), error.code)


def _continue_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _continue_offset(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request(f"continue key is not valid: {token}") from None


class ApiServer:
    def __init__(self, store: Store, faults: FaultInjector, requests: list[RecordedRequest]) -> None:
        self.store = store
        self.faults = faults
        self.requests = requests
        self.watch_queues: set[asyncio.Queue[Event | None]] = set()

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def stop_watches(self) -> None:
        for queue in list(self.watch_queues):
            queue.put_nowait(None)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body_bytes = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            content_type=request.headers.get("Content-Type", ""),
            body=_decode_quietly(body_bytes),
        )
        self.requests.append(recorded)
        fault = self.faults.take(request.method, request.path)
        if fault is not None:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status >= 400:
                recorded.status = fault.status
                return _error(errors.ApiError(fault.status, fault.reason, f"fakekube injected fault: {fault.reason}"))
        try:
            response: web.StreamResponse = await handler(request)
        except errors.ApiError as error:
            response = _error(error)
        recorded.status = response.status
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = [part for part in request.path.split("/") if part]
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/version"]})
        if parts == ["version"]:
            return _json(discovery.VERSION_INFO)
        if len(parts) == 1 and parts[0] in _HEALTH_PATHS:
            return web.Response(text="ok")
        if parts[0] == "api":
            if len(parts) == 1:
                return _json(discovery.api_versions(request.host))
            return await self._group_version(request, "", parts[1], parts[2:])
        if parts[0] == "apis":
            if len(parts) == 1:
                with self.store.lock:
                    return _json(discovery.api_group_list(self.store.registry))
            with self.store.lock:
                versions = self.store.registry.group_versions().get(parts[1])
            if not versions:
                raise errors.unknown_resource()
            if len(parts) == 2:
                return _json(discovery.api_group(parts[1], versions))
            return await self._group_version(request, parts[1], parts[2], parts[3:])
        raise errors.unknown_resource()

    async def _group_version(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        with self.store.lock:
            types = self.store.registry.resources(group, version)
            target = self._target(group, version, rest) if types and rest else None
        if not types:
            raise errors.unknown_resource()
        if target is None:
            if request.method != "GET":
                raise errors.method_not_allowed()
            return _json(discovery.resource_list(group, version, types))
        if request.query.get("dryRun"):
            raise errors.bad_request("fakekube does not implement dryRun")
        return await self._dispatch(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = None
        is_namespace_subresource = not group and len(rest) == 3 and rest[2] in ("status", "finalize")
        if rest[0] == "namespaces" and len(rest) >= 3 and not is_namespace_subresource:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.unknown_resource()
        resource_type = self.store.registry.lookup(group, version, rest[0])
        if resource_type is None or (namespace is not None and not resource_type.namespaced):
            raise errors.unknown_resource()
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if name is not None and resource_type.namespaced and namespace is None:
            raise errors.unknown_resource()
        if subresource is not None and not (
            (subresource == "status" and resource_type.has_status)
            or (subresource == "scale" and resource_type.scale is not None)
        ):
            raise errors.unknown_resource()
        return Target(resource_type, namespace, name, subresource)

    async def _dispatch(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.name is None:
            return await self._collection(request, target)
        if target.subresource == "scale":
            return await self._scale(request, target, target.name)
        return await self._object(request, target, target.name)

    async def _collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        method, resource_type, namespace = request.method, target.resource_type, target.namespace
        if method == "GET":
            return await self._list_or_watch(request, target)
        if method == "POST" and (namespace is not None or not resource_type.namespaced):
            return _json(self.store.create(resource_type, namespace, await _body(request, required=True)), 201)
        if method == "DELETE":
            options = _delete_options(request, await _body(request))
            return _json(self.store.delete_collection(resource_type, namespace, _matcher(request), options))
        raise errors.method_not_allowed()

    async def _scale(self, request: web.Request, target: Target, name: str) -> web.StreamResponse:
        method, resource_type, namespace = request.method, target.resource_type, target.namespace
        if method == "GET":
            return _json(self.store.get_scale(resource_type, namespace, name))
        if method == "PUT":
            return _json(self.store.replace_scale(resource_type, namespace, name, await _body(request, required=True)))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            patch = await _body(request, required=True)
            return _json(self.store.patch_scale(resource_type, namespace, name, content_type, patch))
        raise errors.method_not_allowed()

    async def _object(self, request: web.Request, target: Target, name: str) -> web.StreamResponse:
        """One object or its /status (the only other subresource `_target` lets through)."""
        method, store = request.method, self.store
        resource_type, namespace, subresource = target.resource_type, target.namespace, target.subresource
        if method == "GET":
            obj = store.get(resource_type, namespace, name)
            if table.wants_table(request.headers.get("Accept", "")):
                include = request.query.get("includeObject", "")
                return _json(table.table(resource_type, [obj], obj["metadata"]["resourceVersion"], include))
            return _json(obj)
        if method == "PUT":
            body = await _body(request, required=True)
            return _json(store.replace(resource_type, namespace, name, body, subresource))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            patch = await _body(request, required=True)
            return _json(store.patch(resource_type, namespace, name, content_type, patch, subresource))
        if method == "DELETE" and subresource is None:
            status, body = store.delete(resource_type, namespace, name, _delete_options(request, await _body(request)))
            return _json(body, status)
        raise errors.method_not_allowed()

    async def _list_or_watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        matches = _matcher(request)
        if request.query.get("watch") in WATCH_FLAGS:
            return await serve_watch(
                request, self.store, target.resource_type, target.namespace, matches, self.watch_queues
            )
        items, resource_version = self.store.list(target.resource_type, target.namespace, matches)
        if table.wants_table(request.headers.get("Accept", "")):
            include = request.query.get("includeObject", "")
            return _json(table.table(target.resource_type, items, resource_version, include))
        metadata: dict[str, Any] = {"resourceVersion": resource_version}
        offset = _continue_offset(request.query["continue"]) if request.query.get("continue") else 0
        limit = int(request.query.get("limit") or 0)
        items = items[offset:]
        if limit and len(items) > limit:
            metadata["continue"] = _continue_token(offset + limit)
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if not target.resource_type.custom:
            for item in items:  # built-in lists carry apiVersion/kind only on the list itself
                item.pop("apiVersion", None)
                item.pop("kind", None)
        resource_type = target.resource_type
        return _json(
            {
                "kind": resource_type.list_kind_name,
                "apiVersion": resource_type.api_version,
                "metadata": metadata,
                "items": items,
            }
        )


def _matcher(request: web.Request) -> Any:
    labels = parse_label_selector(request.query.get("labelSelector"))
    fields = parse_field_selector(request.query.get("fieldSelector"))
    return lambda obj: matches_labels(labels, obj) and fields(obj)


def _decode_quietly(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


async def _body(request: web.Request, *, required: bool = False) -> Any:
    raw = await request.read()
    if not raw:
        if required:
            raise errors.bad_request("the request body is empty")
        return None
    try:
        if "yaml" in request.headers.get("Content-Type", ""):
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as error:
        raise errors.bad_request(f"the body of the request could not be decoded: {error}") from None


def _delete_options(request: web.Request, body: Obj | None) -> Obj:
    options = dict(body or {})
    for param in ("propagationPolicy", "gracePeriodSeconds"):
        if param in request.query:
            options[param] = request.query[param]
    if "orphanDependents" in request.query:
        options["orphanDependents"] = request.query["orphanDependents"] in WATCH_FLAGS
    return options
