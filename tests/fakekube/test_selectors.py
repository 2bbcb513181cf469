"""Label and field selectors on lists (the grammar of `kubectl get -l` / the `labelSelector` parameter)."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from tests.fakekube.conftest import Clients
from tests.fakekube.selectors import parse_label_selector, selector_to_string

NS = "test"


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier in (web, db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("track", ["b"]),
        ("!track", ["a", "c", "d"]),
        ("tier=web,track=canary", ["b"]),
        ("tier in (web,db),!track", ["a", "c"]),
    ],
)
def test_label_selectors_over_http(kube: Clients, selector: str, expected: list[str]) -> None:
    """Real: =, ==, !=, in, notin, exists, !exists, comma = AND (`!=` and `notin` match objects without the key)."""
    labels = {"a": {"tier": "web"}, "b": {"tier": "web", "track": "canary"}, "c": {"tier": "db"}, "d": {}}
    for name, object_labels in labels.items():
        kube.core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": object_labels}})
    listed = kube.core.list_namespaced_config_map(NS, label_selector=selector)
    assert [item.metadata.name for item in listed.items] == expected


def test_field_selectors_over_http(kube: Clients) -> None:
    """Real: metadata.name and metadata.namespace field selectors, also across namespaces."""
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "one"}})
    kube.core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    kube.core.create_namespaced_config_map(NS, {"metadata": {"name": "two"}})
    by_name = kube.core.list_config_map_for_all_namespaces(field_selector="metadata.name=one")
    by_namespace = kube.core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={NS},metadata.name!=one"
    )
    assert sorted(item.metadata.namespace for item in by_name.items) == ["default", NS]
    assert [item.metadata.name for item in by_namespace.items] == ["two"]


def test_malformed_selector_is_400(kube: Clients) -> None:
    with pytest.raises(ApiException) as raised:
        kube.core.list_namespaced_config_map(NS, label_selector="tier in web")
    assert raised.value.status == 400


def test_selector_to_string_is_what_scale_status_selector_shows() -> None:
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}],
    }
    assert selector_to_string(selector) == "a=1,b=2,t in (x,y)"
    assert parse_label_selector(selector_to_string(selector))({"a": "1", "b": "2", "t": "x"})
