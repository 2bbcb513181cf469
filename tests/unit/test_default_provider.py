"""CANARYFLOW_MESH_PROVIDER (Flagger's -mesh-provider) fills an empty spec.provider before the release starts."""

from __future__ import annotations

import pytest

from canaryflow.client import with_default_provider
from canaryflow.settings import Settings
from tests.workflow.harness import canary, request


def test_an_empty_provider_takes_the_mesh_provider() -> None:
    started = with_default_provider(request(canary(provider=None)), "gatewayapi:v1beta1")
    assert started.canary.spec.provider == "gatewayapi:v1beta1"


def test_a_provider_in_the_spec_wins() -> None:
    started = with_default_provider(request(canary(provider="linkerd")), "istio")
    assert started.canary.spec.provider == "linkerd"


def test_no_mesh_provider_leaves_the_spec_alone() -> None:
    original = request(canary(provider=None))
    assert with_default_provider(original, None).canary.spec.provider is None


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYFLOW_MESH_PROVIDER", "istio")
    assert Settings().mesh_provider == "istio"
    monkeypatch.setenv("CANARYFLOW_MESH_PROVIDER", "")
    assert Settings().mesh_provider is None
