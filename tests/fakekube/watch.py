"""`?watch=true`: initial or replayed events, then live ones, until `timeoutSeconds` (the client relies on it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import errors
from .kinds import ResourceType
from .store import Event, Store, present

DEFAULT_WATCH_TIMEOUT_SECONDS = 1800.0  # the real apiserver picks 30-60 minutes
WATCH_FLAGS = ("true", "True", "1")

Matches = Callable[[dict[str, Any]], bool]


def _translate(
    event: Event, resource_type: ResourceType, namespace: str | None, matches: Matches
) -> tuple[str, dict[str, Any]] | None:
    """What a watcher with selectors sees: leaving the selection reads as DELETED, entering it as ADDED."""
    if event.storage_key != resource_type.storage_key or (namespace and event.namespace != namespace):
        return None
    obj = present(resource_type, event.obj)
    now_matches = matches(obj)
    if event.type != "MODIFIED":
        return (event.type, obj) if now_matches else None
    was_matching = event.old is not None and matches(present(resource_type, event.old))
    if now_matches:
        return ("MODIFIED" if was_matching else "ADDED"), obj
    return ("DELETED", obj) if was_matching else None


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return (json.dumps({"type": event_type, "object": obj}) + "\n").encode()


async def serve_watch(
    request: web.Request,
    store: Store,
    resource_type: ResourceType,
    namespace: str | None,
    matches: Matches,
    active: set[asyncio.Queue[Event | None]],
) -> web.StreamResponse:
    query = request.query
    timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_SECONDS)
    requested = query.get("resourceVersion") or ""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def listener(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    initial: list[tuple[str, dict[str, Any]]] = []
    with store.lock:
        if requested in ("", "0"):
            initial = [("ADDED", obj) for obj in store.list(resource_type, namespace, matches)[0]]
        else:
            try:
                since = int(requested)
            except ValueError:
                raise errors.bad_request(f'resourceVersion: Invalid value: "{requested}": must be an integer') from None
            oldest = store.oldest_replayable()
            if since < oldest:
                initial = [("ERROR", errors.expired(since, oldest + 1).status())]
            else:
                initial = [
                    item
                    for event in store.events
                    if event.resource_version > since
                    and (item := _translate(event, resource_type, namespace, matches)) is not None
                ]
        if not initial or initial[0][0] != "ERROR":
            store.listeners.add(listener)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    active.add(queue)
    try:
        for event_type, obj in initial:
            await response.write(_line(event_type, obj))
        if initial and initial[0][0] == "ERROR":
            return response
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            if event is None:  # the server is stopping
                break
            translated = _translate(event, resource_type, namespace, matches)
            if translated is not None:
                await response.write(_line(*translated))
        if query.get("allowWatchBookmarks") in WATCH_FLAGS:
            bookmark = {
                "kind": resource_type.kind,
                "apiVersion": resource_type.api_version,
                "metadata": {"resourceVersion": str(store.resource_version)},
            }
            await response.write(_line("BOOKMARK", bookmark))
    except ConnectionResetError:
        pass
    finally:
        store.listeners.discard(listener)
        active.discard(queue)
    return response
