"""Revision identity and config tracking of Kubernetes workloads (pure functions, no API server)."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from activities.kube.configs import apply_primary_configs, checksum, referenced_configs
from activities.kube.revision import config_revision, pod_template_revision, template_and_configs_revision


def _template() -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": None, "labels": {"app": "podinfo"}, "annotations": {"team": "a"}},
        "spec": {
            "containers": [
                {
                    "name": "podinfod",
                    "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                    "ports": [{"containerPort": 9898, "name": "http", "protocol": "TCP"}],
                    "env": [{"name": "LEVEL", "value": "info"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                }
            ],
            "restartPolicy": "Always",
        },
    }


def test_revision_ignores_key_order_and_fields_a_newer_api_adds_empty() -> None:
    reordered = {"spec": dict(reversed(list(_template()["spec"].items()))), "metadata": _template()["metadata"]}
    newer_api = _template()
    # What a newer server or client adds without a value must not start a release (fluxcd/flagger#1673, #1799).
    newer_api["spec"]["resizePolicy"] = []
    newer_api["spec"]["hostUsers"] = None
    newer_api["spec"]["containers"][0]["resizePolicy"] = []
    newer_api["spec"]["schedulingGates"] = {}
    del newer_api["metadata"]["creationTimestamp"]
    assert pod_template_revision(reordered) == pod_template_revision(_template())
    assert pod_template_revision(newer_api) == pod_template_revision(_template())


def test_revision_changes_with_image_env_and_pod_labels() -> None:
    base = pod_template_revision(_template())
    image = _template()
    image["spec"]["containers"][0]["image"] = "ghcr.io/stefanprodan/podinfo:6.0.1"
    env = _template()
    env["spec"]["containers"][0]["env"][0]["value"] = "debug"
    labels = _template()
    labels["metadata"]["labels"]["version"] = "2"
    disabled_flag = _template()
    disabled_flag["spec"]["automountServiceAccountToken"] = False
    revisions = {base, *(pod_template_revision(t) for t in (image, env, labels, disabled_flag))}
    assert len(revisions) == 5


def test_revision_ignores_scale_to_zero_node_selector_and_pod_id() -> None:
    scaled_down = _template()
    scaled_down["spec"]["nodeSelector"] = {"flagger.app/scale-to-zero": "true"}
    with_id = _template()
    with_id["metadata"]["annotations"]["flagger-id"] = "0e5d1f5c-8d8c-4d0b-9b7e-2f6c1b1d9a11"
    other_selector = _template()
    other_selector["spec"]["nodeSelector"] = {"disk": "ssd", "flagger.app/scale-to-zero": "true"}
    assert pod_template_revision(scaled_down) == pod_template_revision(_template())
    assert pod_template_revision(with_id) == pod_template_revision(_template())
    assert pod_template_revision(other_selector) != pod_template_revision(_template())


def test_revision_does_not_modify_its_input() -> None:
    template = _template()
    template["spec"]["nodeSelector"] = {"flagger.app/scale-to-zero": "true"}
    before = copy.deepcopy(template)
    pod_template_revision(template)
    assert template == before


def test_config_changes_change_the_workload_revision() -> None:
    template = _template()
    no_configs = template_and_configs_revision(template, {})
    with_config = template_and_configs_revision(template, {"configmap/podinfo-config": "aaaa"})
    changed_config = template_and_configs_revision(template, {"configmap/podinfo-config": "bbbb"})
    assert no_configs == pod_template_revision(template)
    assert len({no_configs, with_config, changed_config}) == 3
    assert config_revision({"secret/a": "1", "configmap/b": "2"}) == config_revision(
        {"configmap/b": "2", "secret/a": "1"}
    )


def test_checksum_is_flaggers_go_json_sha256_prefix() -> None:
    # Go's json.Marshal sorts map keys and escapes <, > and & as \u003c, \u003e, \u0026.
    go_json = b'{"a":"x \\u003c y \\u0026\\u0026 z \\u003e 1","b":"\xc3\xa9"}'
    assert checksum({"b": "é", "a": "x < y && z > 1"}) == hashlib.sha256(go_json).hexdigest()[:16]
    assert checksum(None) == hashlib.sha256(b"null").hexdigest()[:16]


def _pod_spec() -> dict[str, Any]:
    return {
        "volumes": [
            {"name": "cfg", "configMap": {"name": "podinfo-config-vol"}},
            {"name": "sec", "secret": {"secretName": "podinfo-secret-vol", "optional": True}},
            {
                "name": "all",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "podinfo-projected-cm"}},
                        {"secret": {"name": "podinfo-projected-secret"}},
                    ]
                },
            },
        ],
        "containers": [
            {
                "name": "podinfod",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "podinfo-config-env", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "podinfo-secret-env", "key": "b"}}},
                    {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "podinfo-config-all-env"}}, {"secretRef": {"name": "untracked"}}],
            }
        ],
        "initContainers": [
            {"name": "init", "envFrom": [{"secretRef": {"name": "podinfo-secret-init", "optional": False}}]}
        ],
    }


def test_referenced_configs_scan_volumes_env_envfrom_and_init_containers() -> None:
    assert referenced_configs(_pod_spec()) == {
        ("configmap", "podinfo-config-vol"): True,
        ("secret", "podinfo-secret-vol"): False,
        ("configmap", "podinfo-projected-cm"): True,
        ("secret", "podinfo-projected-secret"): True,
        ("configmap", "podinfo-config-env"): True,
        ("secret", "podinfo-secret-env"): True,
        ("configmap", "podinfo-config-all-env"): True,
        ("secret", "untracked"): True,
        ("secret", "podinfo-secret-init"): True,
    }


def test_apply_primary_configs_renames_only_tracked_references() -> None:
    tracked = {
        f"{kind}/{name}": "x"
        for kind, name in referenced_configs(_pod_spec())
        if name != "untracked"  # e.g. annotated flagger.app/config-tracking: disabled
    }
    spec = apply_primary_configs(_pod_spec(), tracked)
    assert spec["volumes"][0]["configMap"]["name"] == "podinfo-config-vol-primary"
    assert spec["volumes"][1]["secret"]["secretName"] == "podinfo-secret-vol-primary"
    sources = spec["volumes"][2]["projected"]["sources"]
    assert [sources[0]["configMap"]["name"], sources[1]["secret"]["name"]] == [
        "podinfo-projected-cm-primary",
        "podinfo-projected-secret-primary",
    ]
    container = spec["containers"][0]
    assert container["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "podinfo-config-env-primary"
    assert container["env"][1]["valueFrom"]["secretKeyRef"]["name"] == "podinfo-secret-env-primary"
    assert container["env"][2] == _pod_spec()["containers"][0]["env"][2]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "podinfo-config-all-env-primary"}},
        {"secretRef": {"name": "untracked"}},
    ]
    assert spec["initContainers"][0]["envFrom"][0]["secretRef"]["name"] == "podinfo-secret-init-primary"
    assert _pod_spec()["volumes"][0]["configMap"]["name"] == "podinfo-config-vol"  # input untouched
