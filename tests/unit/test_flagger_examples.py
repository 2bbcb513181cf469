"""Flagger's documented manifests load unchanged, and our per-provider examples are complete and valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryflow.loader import load_files
from canaryflow.spec import CANARYFLOW_API_VERSION, AlertProvider, Canary, MetricTemplate

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).parents[2]
FLAGGER_DOCS = REPO_ROOT / "tests" / "data" / "canaries" / "flagger-docs"
EXAMPLES = REPO_ROOT / "deploy" / "examples"
PROVIDERS = ("gatewayapi", "istio", "linkerd", "nginx", "kubernetes")
# Flagger's documented provider spellings per example directory; no provider means Flagger's default, istio.
PROVIDER_SPELLINGS = {
    "gatewayapi": {"gatewayapi:v1", "gatewayapi:v1beta1"},
    "istio": {"istio", None},
    "linkerd": {"linkerd", "smi:v1alpha1", "smi:v1alpha2", "smi:v1alpha3"},
    "nginx": {"nginx"},
    "kubernetes": {"kubernetes"},
}
# Flagger's gatewayapi and linkerd tutorials leave spec.provider to the installation's -mesh-provider flag.
PROVIDER_FROM_INSTALLATION = {"gatewayapi", "linkerd"}


@pytest.mark.parametrize("path", sorted(FLAGGER_DOCS.glob("*.yaml")), ids=lambda path: path.name)
def test_flagger_documented_manifest_loads(path: Path) -> None:
    result = load_files([path])
    assert result.errors == []
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    assert [resource.kind for resource in result.resources] == [document["kind"] for document in documents]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_flagger_docs_cover_the_provider(provider: str) -> None:
    # Where the installation sets the provider, the tutorial a manifest comes from (its file name) tells it.
    tutorials = sorted(FLAGGER_DOCS.glob(f"{provider}-*.yaml"))
    canaries = [resource for resource in load_files(tutorials).resources if isinstance(resource, Canary)]
    spellings = PROVIDER_SPELLINGS[provider] | ({None} if provider in PROVIDER_FROM_INSTALLATION else set())
    assert any(canary.spec.provider in spellings for canary in canaries)


def _objects(directory: Path) -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(directory.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_example_canary_loads_in_our_group(provider: str) -> None:
    result = load_files([EXAMPLES / provider / "canary.yaml"])
    assert result.errors == []
    canaries = [resource for resource in result.resources if isinstance(resource, Canary)]
    assert len(canaries) == 1
    canary = canaries[0]
    assert all(resource.api_version == CANARYFLOW_API_VERSION for resource in result.resources)
    assert canary.spec.provider in PROVIDER_SPELLINGS[provider]
    assert (canary.metadata.name, canary.metadata.namespace) == ("podinfo", "test")
    assert canary.spec.analysis is not None
    assert canary.spec.analysis.metrics or canary.spec.analysis.webhooks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_example_references_resolve_to_objects_it_ships(provider: str) -> None:
    result = load_files([EXAMPLES / provider / "canary.yaml"])
    canary = next(resource for resource in result.resources if isinstance(resource, Canary))
    shipped = {(obj["kind"], obj["metadata"]["name"]) for obj in _objects(EXAMPLES / "podinfo")}
    shipped |= {(obj["kind"], obj["metadata"]["name"]) for obj in _objects(EXAMPLES / provider)}
    spec = canary.spec
    assert (spec.target_ref.kind, spec.target_ref.name) in shipped
    if spec.autoscaler_ref is not None:
        assert (spec.autoscaler_ref.kind, spec.autoscaler_ref.name) in shipped
    if spec.ingress_ref is not None:
        assert ("Ingress", spec.ingress_ref.name) in shipped
    assert spec.analysis is not None
    templates = {resource.metadata.name for resource in result.resources if isinstance(resource, MetricTemplate)}
    for metric in spec.analysis.metrics:
        assert metric.is_builtin or (metric.template_ref is not None and metric.template_ref.name in templates)
    providers = {resource.metadata.name for resource in result.resources if isinstance(resource, AlertProvider)}
    for alert in spec.analysis.alerts:
        assert alert.provider_ref.name in providers


def test_nginx_example_requires_its_ingress() -> None:
    canary = next(r for r in load_files([EXAMPLES / "nginx" / "canary.yaml"]).resources if isinstance(r, Canary))
    assert canary.spec.ingress_ref is not None
    ingress = next(obj for obj in _objects(EXAMPLES / "nginx") if obj["kind"] == "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "podinfo", "port": {"number": canary.spec.service.port}}
