"""Watches through `kubernetes.watch.Watch`: initial ADDED, live events, replay, 410 Expired, timeouts, selectors.

Most tests stop the watch once they have the events they expect (`first`), so the suite does not wait for
`timeoutSeconds`; a trailing marker write proves nothing else was sent before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.fake import FakeKube
from tests.fakekube.samples import deployment

NS = "test"


def first(count: int, list_call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """The first `count` events of a watch (which then stops); a 5 s server timeout guards against hangs."""
    watcher = watch.Watch()
    events = []
    for event in watcher.stream(list_call, *args, timeout_seconds=5, **kwargs):
        events.append(event)
        if len(events) == count:
            watcher.stop()
    return events


def names(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["type"], event["object"].metadata.name) for event in events]


def later(action: Callable[[], Any]) -> threading.Thread:
    def run() -> None:
        time.sleep(0.1)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_watch_from_now_gets_synthetic_added_then_live_events(kube: Clients) -> None:
    """Real: without resourceVersion, existing objects arrive as ADDED, then changes follow live."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "before"}})

    def writes() -> None:
        kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "during"}})
        kube.core.patch_namespaced_config_map("during", NS, {"data": {"a": "1"}})
        kube.core.delete_namespaced_config_map("during", NS)

    writer = later(writes)
    events = first(4, kube.core.list_namespaced_config_map, NS)
    writer.join()
    assert names(events) == [("ADDED", "before"), ("ADDED", "during"), ("MODIFIED", "during"), ("DELETED", "during")]


def test_watch_honours_timeout_seconds(kube: Clients) -> None:
    """Real: the server ends the stream after timeoutSeconds; the Python Watch relies on it to return."""
    started = time.monotonic()
    assert list(watch.Watch().stream(kube.core.list_namespaced_secret, NS, timeout_seconds=1)) == []
    assert 0.9 < time.monotonic() - started < 3


def test_watch_replays_from_a_resource_version(kube: Clients) -> None:
    """Real: a resourceVersion replays later events from the watch cache, in order, with growing RVs."""
    kube.apps.create_namespaced_deployment(NS, deployment())
    start = kube.apps.list_namespaced_deployment(NS).metadata.resource_version
    kube.apps.patch_namespaced_deployment_scale("podinfo", NS, {"spec": {"replicas": 3}})
    kube.apps.delete_namespaced_deployment("podinfo", NS)
    events = first(3, kube.apps.list_namespaced_deployment, NS, resource_version=start)
    # the scale write, the Kubelet's status write answering it, then the delete
    assert [(e["type"], e["object"].spec.replicas) for e in events] == [
        ("MODIFIED", 3),
        ("MODIFIED", 3),
        ("DELETED", 3),
    ]
    assert events[1]["object"].status.ready_replicas == 3
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)


def test_watch_from_the_current_resource_version_replays_nothing(kube: Clients) -> None:
    """Real: watching from the list's resourceVersion gives only later changes."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "old"}})
    current = kube.core.list_namespaced_config_map(NS).metadata.resource_version
    marker = later(lambda: kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "marker"}}))
    events = first(1, kube.core.list_namespaced_config_map, NS, resource_version=current)
    marker.join()
    assert names(events) == [("ADDED", "marker")]


def test_compacted_resource_version_is_410_expired() -> None:
    """Real: the watch cache is bounded; a too-old resourceVersion gets an ERROR event with 410 Expired."""
    with FakeKube(compact_after_events=3) as small:
        core = client.CoreV1Api(small.api_client())
        first_version = core.create_namespaced_config_map(
            "default", {"metadata": {"name": "a"}}
        ).metadata.resource_version
        for name in ("b", "c", "d", "e"):
            core.create_namespaced_config_map("default", {"metadata": {"name": name}})
        with pytest.raises(ApiException) as raised:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=first_version, timeout_seconds=1
                )
            )
        assert raised.value.status == 410
        assert "Expired: too old resource version" in str(raised.value.reason)


def test_watch_applies_label_selector_transitions(kube: Clients) -> None:
    """Real: an object leaving the selection is DELETED for the watcher, one entering it is ADDED."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg", "labels": {"tier": "web"}}})
    current = kube.core.list_namespaced_config_map(NS).metadata.resource_version
    kube.core.patch_namespaced_config_map("cfg", NS, {"metadata": {"labels": {"tier": "db"}}})
    kube.core.patch_namespaced_config_map("cfg", NS, {"metadata": {"labels": {"tier": "web"}}})
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "other", "labels": {"tier": "db"}}})
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "marker", "labels": {"tier": "web"}}})
    events = first(3, kube.core.list_namespaced_config_map, NS, label_selector="tier=web", resource_version=current)
    assert names(events) == [("DELETED", "cfg"), ("ADDED", "cfg"), ("ADDED", "marker")]


def test_watch_single_object_by_field_selector(kube: Clients) -> None:
    """Real: `fieldSelector=metadata.name=<name>` watches one object."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "one"}})
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "two"}})
    marker = later(lambda: kube.core.patch_namespaced_config_map("two", NS, {"data": {"a": "1"}}))
    events = first(2, kube.core.list_namespaced_config_map, NS, field_selector="metadata.name=two")
    marker.join()
    assert names(events) == [("ADDED", "two"), ("MODIFIED", "two")]


def test_custom_object_watch_and_bookmark(kube: Clients) -> None:
    """CustomObjectsApi watches yield dicts; allowWatchBookmarks ends the stream with a BOOKMARK (current RV)."""
    args = ("networking.istio.io", "v1", NS, "virtualservices")
    body = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"}, "spec": {}}
    kube.custom.create_namespaced_custom_object(*args, body)
    stream = watch.Watch().stream(
        kube.custom.list_namespaced_custom_object, *args, timeout_seconds=1, allow_watch_bookmarks=True
    )
    events = [(event["type"], event["raw_object"]["metadata"].get("name")) for event in stream]
    assert events == [("ADDED", "vs"), ("BOOKMARK", None)]
