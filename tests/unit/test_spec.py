"""Canary / MetricTemplate / AlertProvider models: Flagger YAML in, Flagger YAML out, Flagger's defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from canaryflow.loader import canary_from_yaml, load_files
from canaryflow.spec import (
    CANARYFLOW_API_VERSION,
    FLAGGER_API_VERSION,
    MESH_PROVIDERS,
    AlertProvider,
    Canary,
    CanaryWebhook,
    MetricTemplate,
    WebhookType,
    is_duration,
    parse_duration,
)

pytestmark = pytest.mark.unit

VALID_DIR = Path(__file__).parents[1] / "data" / "canaries" / "valid"
VALID_FILES = sorted(VALID_DIR.glob("*.yaml"))


def canary_doc(**analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": FLAGGER_API_VERSION,
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1m", "threshold": 5, **analysis},
        },
    }


def load_one(name: str) -> Any:
    result = load_files([VALID_DIR / name])
    assert result.errors == []
    assert len(result.resources) == 1
    return result.resources[0]


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda path: path.name)
def test_flagger_examples_are_accepted_unchanged(path: Path) -> None:
    result = load_files([path])
    assert [str(error) for error in result.errors] == []
    assert result.resources


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda path: path.name)
def test_dump_by_alias_validates_back_to_the_same_resource(path: Path) -> None:
    for resource in load_files([path]).resources:
        dumped = resource.model_dump(by_alias=True, exclude_none=True, mode="json")
        assert type(resource).model_validate(dumped) == resource


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda path: path.name)
def test_resources_survive_the_temporal_pydantic_converter(path: Path) -> None:
    converter = pydantic_data_converter.payload_converter
    for resource in load_files([path]).resources:
        payloads = converter.to_payloads([resource])
        assert converter.from_payloads(payloads, [type(resource)]) == [resource]


def test_istio_canary_fields_map_to_snake_case_attributes() -> None:
    canary = load_one("istio-canary.yaml")
    assert isinstance(canary, Canary)
    spec = canary.spec
    assert canary.metadata.namespace == "test"
    assert spec.target_ref.kind == "Deployment"
    assert spec.autoscaler_ref is not None and spec.autoscaler_ref.kind == "HorizontalPodAutoscaler"
    assert spec.progress_deadline_seconds == 60
    assert spec.service.port == 9898
    assert spec.service.target_port == 9898
    assert spec.service.gateways == ["istio-system/public-gateway"]
    assert spec.service.traffic_policy == {"tls": {"mode": "DISABLE"}}
    assert spec.service.retries is not None and spec.service.retries["perTryTimeout"] == "1s"
    analysis = spec.analysis
    assert analysis is not None
    assert (analysis.max_weight, analysis.step_weight, analysis.strategy) == (50, 10, "canary")
    assert analysis.metrics[0].threshold_range is not None
    assert analysis.metrics[0].threshold_range.min == 99
    assert analysis.metrics[0].is_builtin
    pre, load = analysis.webhooks
    assert pre.type is WebhookType.PRE_ROLLOUT and pre.timeout == "30s"
    assert load.type is WebhookType.ROLLOUT  # untyped hooks are rollout hooks
    assert load.metadata["cmd"].startswith("hey ")


def test_flagger_defaults_apply() -> None:
    canary = Canary.model_validate(
        canary_doc(
            stepWeight=10,
            metrics=[{"name": "request-success-rate"}],
            webhooks=[{"name": "load", "url": "http://loadtester/"}],
            sessionAffinity={"cookieName": "c"},
        )
    )
    spec = canary.spec
    assert spec.progress_deadline_seconds == 600
    assert (spec.skip_analysis, spec.revert_on_deletion, spec.suspend) == (False, False, False)
    assert spec.service.port_name == "http"
    assert spec.provider is None
    analysis = spec.analysis
    assert analysis is not None
    assert (analysis.primary_ready_threshold, analysis.canary_ready_threshold) == (100, 100)
    assert (analysis.iterations, analysis.max_weight, analysis.step_weight_promotion) == (0, None, 0)
    assert analysis.metrics[0].interval == "1m"
    webhook = analysis.webhooks[0]
    assert (webhook.type, webhook.timeout, webhook.retries, webhook.disable_tls) == (
        "rollout",
        "10s",
        0,
        False,
    )
    assert analysis.session_affinity is not None and analysis.session_affinity.max_age == 86400
    provider = AlertProvider.model_validate(
        {
            "apiVersion": FLAGGER_API_VERSION,
            "kind": "AlertProvider",
            "metadata": {"name": "on-call"},
            "spec": {"type": "slack", "address": "https://hooks.slack.com/x"},
        }
    )
    assert (provider.metadata.namespace, provider.spec.channel, provider.spec.username) == (
        "default",
        "general",
        "flagger",
    )


def test_dump_gives_flagger_camel_case_keys() -> None:
    canary = load_one("canaryflow-local-app.yaml")
    dumped = canary.model_dump(by_alias=True, exclude_none=True)
    analysis = dumped["spec"]["analysis"]
    assert dumped["spec"]["targetRef"]["kind"] == "LocalApp"
    assert dumped["spec"]["metricsServer"] == "http://127.0.0.1:9090"
    assert analysis["stepWeights"] == [5, 10, 25, 50, 80]
    assert analysis["sessionAffinity"]["primaryCookieName"] == "shop-primary"
    promote = next(hook for hook in analysis["webhooks"] if hook["name"] == "promote")
    assert promote["disableTLS"] is True and promote["muteAlert"] is True
    assert promote["type"] == "confirm-promotion"


def test_dump_omits_the_unused_strategy_keys_so_flagger_crd_oneof_holds() -> None:
    blue_green = load_one("kubernetes-blue-green.yaml")
    analysis = blue_green.model_dump(by_alias=True, exclude_none=True)["spec"]["analysis"]
    assert analysis["iterations"] == 10
    assert "stepWeight" not in analysis and "stepWeights" not in analysis
    canary = load_one("nginx-canary.yaml")
    analysis = canary.model_dump(by_alias=True, exclude_none=True)["spec"]["analysis"]
    assert analysis["stepWeight"] == 5
    assert "iterations" not in analysis and "stepWeights" not in analysis


def test_attribute_names_are_accepted_as_keys_too() -> None:
    webhook = CanaryWebhook.model_validate(
        {"name": "x", "url": "http://a/", "disable_tls": True, "mute_alert": True, "type": "event"}
    )
    assert webhook.disable_tls and webhook.mute_alert and webhook.type is WebhookType.EVENT


def test_strategy_follows_flagger_deployment_strategy() -> None:
    ab = load_one("istio-ab-testing.yaml")
    assert ab.spec.analysis.strategy == "ab-testing"
    assert ab.spec.analysis.match[1]["headers"]["cookie"]["regex"] == "^(.*?;)?(type=insider)(;.*)?$"
    assert load_one("kubernetes-blue-green.yaml").spec.analysis.strategy == "blue-green"
    assert load_one("gatewayapi-canary.yaml").spec.analysis.strategy == "canary"


def test_deprecated_canary_analysis_is_used_when_analysis_is_absent() -> None:
    doc = canary_doc(iterations=5)
    doc["spec"]["canaryAnalysis"] = doc["spec"].pop("analysis")
    canary = Canary.model_validate(doc)
    assert canary.spec.analysis is not None and canary.spec.analysis.iterations == 5
    assert "canaryAnalysis" not in canary.model_dump(by_alias=True)["spec"]


def test_analysis_wins_over_canary_analysis() -> None:
    doc = canary_doc(stepWeight=10)
    doc["spec"]["canaryAnalysis"] = {"interval": "1m", "threshold": 1, "iterations": 3}
    canary = Canary.model_validate(doc)
    assert canary.spec.analysis is not None and canary.spec.analysis.step_weight == 10


def test_kubectl_export_status_and_server_metadata_are_ignored() -> None:
    canary = load_one("kubectl-export.yaml")
    assert canary.metadata.name == "podinfo"
    assert canary.metadata.annotations == {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert canary.spec.target_ref.kind == "DaemonSet"
    assert canary.spec.analysis.mirror and canary.spec.analysis.mirror_weight == 50
    assert "status" not in canary.model_dump(by_alias=True)


def test_knative_canary_needs_no_service_block() -> None:
    canary = load_one("knative-canary.yaml")
    assert canary.spec.target_ref.is_knative_service
    assert canary.spec.service.port == 80


def test_multi_document_file_yields_every_resource_in_order() -> None:
    resources = load_files([VALID_DIR / "multi-document.yaml"]).resources
    assert [type(resource) for resource in resources] == [MetricTemplate, AlertProvider, Canary]


def test_our_api_group_is_accepted_and_others_are_not() -> None:
    doc = canary_doc(stepWeight=10)
    doc["apiVersion"] = CANARYFLOW_API_VERSION
    assert Canary.model_validate(doc).api_version == CANARYFLOW_API_VERSION
    doc["apiVersion"] = "flagger.app/v1alpha3"
    with pytest.raises(ValidationError, match="unsupported apiVersion"):
        Canary.model_validate(doc)


@pytest.mark.parametrize("provider", [*MESH_PROVIDERS, "smi:v1alpha3:linkerd", "smi:v1alpha1:istio"])
def test_every_flagger_provider_and_haproxy_is_accepted(provider: str) -> None:
    doc = canary_doc(stepWeight=10)
    doc["spec"]["provider"] = provider
    if provider == "knative":
        doc["spec"]["targetRef"] = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "podinfo",
        }
    assert Canary.model_validate(doc).spec.provider == provider


def test_unknown_provider_error_suggests_the_closest_name() -> None:
    doc = canary_doc(stepWeight=10)
    doc["spec"]["provider"] = "linkred"
    with pytest.raises(ValidationError) as caught:
        Canary.model_validate(doc)
    (error,) = caught.value.errors()
    assert error["loc"] == ("spec", "provider")
    assert "Did you mean `linkerd`?" in error["ctx"]["fix"]


def test_knative_provider_with_a_deployment_target_is_rejected() -> None:
    doc = canary_doc(stepWeight=10)
    doc["spec"]["provider"] = "knative"
    with pytest.raises(ValidationError, match="needs a Knative Service target"):
        Canary.model_validate(doc)


def test_knative_target_with_autoscaler_is_rejected() -> None:
    text = (VALID_DIR / "knative-canary.yaml").read_text()
    doc = yaml.safe_load(text)
    doc["spec"]["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "x",
    }
    with pytest.raises(ValidationError, match="cannot use an autoscalerRef"):
        Canary.model_validate(doc)


def test_metric_with_query_or_template_needs_no_builtin_name() -> None:
    canary = Canary.model_validate(
        canary_doc(
            stepWeight=10,
            metrics=[
                {"name": "custom", "query": "vector(1)", "threshold": 1},
                {"name": "custom-template", "templateRef": {"name": "error-rate"}},
            ],
        )
    )
    custom, templated = canary.spec.analysis.metrics  # type: ignore[union-attr]
    assert not custom.is_builtin and custom.threshold == 1
    assert templated.template_ref is not None and templated.template_ref.namespace is None


def test_empty_cookie_name_is_rejected() -> None:
    with pytest.raises(ValidationError, match="cookieName is empty"):
        Canary.model_validate(canary_doc(stepWeight=10, sessionAffinity={"cookieName": ""}))


def test_canary_from_yaml_reads_the_single_canary() -> None:
    text = (VALID_DIR / "multi-document.yaml").read_text()
    canary = canary_from_yaml(text)
    assert canary.metadata.name == "podinfo"
    assert canary.spec.analysis is not None and canary.spec.analysis.alerts[0].severity == "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1m", timedelta(minutes=1)),
        ("1m30s", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h", timedelta(hours=1)),
        ("1.5s", timedelta(seconds=1.5)),
    ],
)
def test_parse_duration_reads_go_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "1 m", "m1", "1d", "-1s"])
def test_parse_duration_rejects_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "valid"),
    [("30s", True), ("5m", True), ("1m30s", True), ("1h", False), ("90", False), ("s", False), ("1x", False)],
)
def test_is_duration_applies_flagger_crd_pattern_and_go_syntax(text: str, valid: bool) -> None:
    assert is_duration(text) is valid
