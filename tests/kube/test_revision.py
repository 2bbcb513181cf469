"""workload_revision / tracked_configs read from the API server (fakekube over HTTP)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from activities.kube.revision import tracked_configs, workload_revision
from tests.fakekube.fake import FakeKube
from tests.kube.workload_fixtures import NS, make_canary, seed_app, set_image, update


def _seed(fake: FakeKube) -> None:
    """The podinfo Deployment with its configs (a tracked ConfigMap and Secret, an untracked ConfigMap)."""
    seed_app(fake, make_canary(), with_hpa=False)


def test_tracked_configs_have_flaggers_shape_and_checksums(fake_kube: FakeKube) -> None:
    _seed(fake_kube)
    configs = tracked_configs(fake_kube.api_client(), make_canary())
    assert configs == {
        "configmap/podinfo-config": hashlib.sha256(b'{"color":"#34577c"}').hexdigest()[:16],
        "secret/podinfo-secret": hashlib.sha256(b'{"password":"czNjcjN0"}').hexdigest()[:16],
    }


def test_image_and_config_changes_change_the_revision_but_replicas_do_not(fake_kube: FakeKube) -> None:
    _seed(fake_kube)
    api, canary = fake_kube.api_client(), make_canary()
    first = workload_revision(api, canary)
    assert workload_revision(api, canary) == first

    update(fake_kube, "apps/v1", "Deployment", "podinfo", lambda d: d["spec"].update(replicas=7))
    assert workload_revision(api, canary) == first

    update(fake_kube, "v1", "ConfigMap", "podinfo-untracked", lambda cm: cm["data"].update(MODE="y"))
    assert workload_revision(api, canary) == first

    update(fake_kube, "v1", "ConfigMap", "podinfo-config", lambda cm: cm["data"].update(color="#ff0000"))
    config_changed = workload_revision(api, canary)
    assert config_changed != first

    update(fake_kube, "v1", "Secret", "podinfo-secret", lambda s: s["data"].update(password="bmV3"))
    secret_changed = workload_revision(api, canary)
    assert secret_changed not in (first, config_changed)

    set_image(fake_kube, "Deployment", "podinfo")
    assert workload_revision(api, canary) not in (first, config_changed, secret_changed)


def test_registry_secrets_and_missing_optional_configs_are_not_tracked(fake_kube: FakeKube) -> None:
    _seed(fake_kube)
    fake_kube.seed(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "registry", "namespace": NS},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="},
        }
    )

    def more_refs(dep: dict[str, Any]) -> None:
        pod = dep["spec"]["template"]["spec"]
        pod["volumes"].append({"name": "reg", "secret": {"secretName": "registry"}})
        pod["volumes"].append({"name": "maybe", "configMap": {"name": "not-there", "optional": True}})

    update(fake_kube, "apps/v1", "Deployment", "podinfo", more_refs)
    assert set(tracked_configs(fake_kube.api_client(), make_canary())) == {
        "configmap/podinfo-config",
        "secret/podinfo-secret",
    }


def test_a_missing_mandatory_config_is_an_error(fake_kube: FakeKube) -> None:
    _seed(fake_kube)
    fake_kube.store.delete(fake_kube.resource_type("v1", "ConfigMap"), NS, "podinfo-config")
    with pytest.raises(ApiException) as missing:
        workload_revision(fake_kube.api_client(), make_canary())
    assert missing.value.status == 404
