"""The generated CRDs: checked in up to date, structural, and accepting what the pydantic models accept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from activities.contracts import StatusReport
from activities.status.kubernetes import build_status
from canaryflow.crds import (
    _DESCRIPTIONS,
    _OBJECT_RULES,
    _VALIDATOR_RULES,
    FLAGGER_GROUP,
    GROUP,
    KINDS,
    REPO_ROOT,
    UnsupportedSchema,
    custom_resource_definition,
    main,
    spec_schema,
    write_files,
)
from workflows.decisions import Phase

jsonschema = pytest.importorskip("jsonschema")

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data" / "canaries"
MANIFEST_DIRS = (DATA / "valid", DATA / "flagger-docs", REPO_ROOT / "deploy" / "examples")
KIND_NAMES = {kind.model.__name__ for kind in KINDS}
SCHEMAS = {
    (group, kind.model.__name__): custom_resource_definition(kind, group)["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    for group in (GROUP, FLAGGER_GROUP)
    for kind in KINDS
}

# ----------------------------------------------------------------------------------------------------
# What the API server does with a structural schema, in JSON Schema terms


def as_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """Translate a structural OpenAPI node into JSON Schema, rejecting unknown fields (kubectl's strict mode)."""
    out: dict[str, Any] = {}
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in node:
        out["type"] = node["type"]
    for key in ("enum", "minimum", "maximum", "pattern", "required", "minItems", "maxItems"):
        if key in node:
            out[key] = node[key]
    if "properties" in node:
        out["properties"] = {key: as_json_schema(value) for key, value in node["properties"].items()}
    if "items" in node:
        out["items"] = as_json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = as_json_schema(node["additionalProperties"])
    elif node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    for junctor in ("anyOf", "oneOf", "allOf"):
        if junctor in node:
            out.setdefault("allOf", []).append({junctor: [as_json_schema(option) for option in node[junctor]]})
    return out


def without_nulls(value: Any) -> Any:
    """The API server drops explicit nulls of non-nullable fields before validating."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def schema_errors(document: dict[str, Any]) -> list[str]:
    group = str(document["apiVersion"]).split("/")[0]
    schema = as_json_schema(SCHEMAS[(group, document["kind"])])
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(without_nulls(document))
    ]


def manifests(*directories: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Canary/MetricTemplate/AlertProvider document in the YAML files (List items included)."""
    for directory in directories:
        for path in sorted(directory.rglob("*.yaml")):
            for index, document in enumerate(yaml.safe_load_all(path.read_text())):
                items = (
                    document.get("items", [])
                    if isinstance(document, dict) and document.get("kind") == "List"
                    else [document]
                )
                for item in items:
                    if isinstance(item, dict) and item.get("kind") in KIND_NAMES:
                        yield f"{path.relative_to(REPO_ROOT)}#{index}:{item['metadata']['name']}", item


ACCEPTED = list(manifests(*MANIFEST_DIRS))


# ----------------------------------------------------------------------------------------------------
# Checked-in files


def test_checked_in_crds_are_up_to_date() -> None:
    assert main(["--check"]) == 0, "run `uv run python -m canaryflow.crds --write`"


def test_check_reports_a_stale_and_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_files(tmp_path)
    stale = tmp_path / "deploy" / "crds" / "canaries.canaryflow.dev.yaml"
    stale.write_text(stale.read_text().replace("cfcanary", "cfc"))
    (tmp_path / "deploy" / "crds" / "flagger-compat" / "alertproviders.flagger.app.yaml").unlink()

    assert main(["--check", "--root", str(tmp_path)]) == 1

    report = capsys.readouterr().err
    assert "deploy/crds/canaries.canaryflow.dev.yaml: stale (2 lines differ)" in report
    assert "deploy/crds/flagger-compat/alertproviders.flagger.app.yaml: missing" in report
    assert "--write" in report


def test_write_regenerates_what_check_expects(tmp_path: Path) -> None:
    written = write_files(tmp_path)
    assert Path("deploy/crds/canaries.canaryflow.dev.yaml") in written
    assert Path("deploy/helm/canaryflow/crds/canaries.canaryflow.dev.yaml") in written
    assert main(["--check", "--root", str(tmp_path)]) == 0
    assert write_files(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# Shape of the CRDs


def test_canary_crd_names_printer_columns_and_subresources() -> None:
    crd = yaml.safe_load((REPO_ROOT / "deploy/crds/canaries.canaryflow.dev.yaml").read_text())
    assert crd["metadata"]["name"] == "canaries.canaryflow.dev"
    assert crd["spec"]["names"] == {
        "kind": "Canary",
        "listKind": "CanaryList",
        "plural": "canaries",
        "singular": "canary",
        "categories": ["all", "canaryflow"],
        "shortNames": ["cfcanary"],
    }
    version = crd["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1beta1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Status": ".status.phase",
        "Weight": ".status.canaryWeight",
        "Suspended": ".spec.suspend",
        "FailedChecks": ".status.failedChecks",
        "Interval": ".spec.analysis.interval",
        "Mirror": ".spec.analysis.mirror",
        "StepWeight": ".spec.analysis.stepWeight",
        "StepWeights": ".spec.analysis.stepWeights",
        "MaxWeight": ".spec.analysis.maxWeight",
        "LastTransitionTime": ".status.lastTransitionTime",
    }


def test_flagger_compat_crds_use_flaggers_names() -> None:
    for kind in KINDS:
        path = REPO_ROOT / "deploy/crds/flagger-compat" / f"{kind.plural}.flagger.app.yaml"
        crd = yaml.safe_load(path.read_text())
        assert crd["metadata"]["name"] == f"{kind.plural}.flagger.app"
        assert crd["spec"]["group"] == "flagger.app"
        assert "shortNames" not in crd["spec"]["names"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_schema_uses_camel_case_keys_required_fields_enums_and_descriptions() -> None:
    spec = SCHEMAS[(GROUP, "Canary")]["properties"]["spec"]
    analysis = spec["properties"]["analysis"]
    assert spec["required"] == ["targetRef"]
    assert {"progressDeadlineSeconds", "skipAnalysis", "revertOnDeletion", "autoscalerRef"} <= set(spec["properties"])
    assert analysis["required"] == ["interval", "threshold"]
    assert analysis["properties"]["interval"]["pattern"] == "^[0-9]+(m|s)"
    assert analysis["properties"]["stepWeights"]["items"] == {"type": "integer", "minimum": 1, "maximum": 100}
    webhook = analysis["properties"]["webhooks"]["items"]
    assert "disableTLS" in webhook["properties"]
    assert "" in webhook["properties"]["type"]["enum"]
    assert "confirm-promotion" in webhook["properties"]["type"]["enum"]
    assert spec["properties"]["targetRef"]["properties"]["kind"]["enum"] == [
        "Deployment",
        "DaemonSet",
        "Service",
        "LocalApp",
    ]
    assert spec["properties"]["service"]["properties"]["targetPort"] == {
        "description": "Container port number or name (defaults to port).",
        "x-kubernetes-int-or-string": True,
    }
    assert spec["properties"]["service"]["properties"]["trafficPolicy"] == {
        "description": "Istio DestinationRule traffic policy for primary and canary.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert spec["properties"]["progressDeadlineSeconds"]["description"]


# ----------------------------------------------------------------------------------------------------
# Structural schema rules (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema)

_FORBIDDEN_IN_JUNCTORS = ("type", "description", "default", "additionalProperties", "nullable", "items")


def _structural_problems(node: dict[str, Any], where: str) -> Iterator[str]:
    if "$ref" in node or "$defs" in node:
        yield f"{where}: uses $ref"
    free = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if "type" not in node and not free:
        yield f"{where}: no type"
    if node.get("type") == "object" and "properties" in node and "additionalProperties" in node:
        yield f"{where}: both properties and additionalProperties"
    for key, child in node.get("properties", {}).items():
        yield from _structural_problems(child, f"{where}.{key}")
    if "items" in node:
        yield from _structural_problems(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _structural_problems(node["additionalProperties"], f"{where}.*")
    for junctor in ("anyOf", "oneOf", "allOf", "not"):
        for option in node.get(junctor, []):
            yield from _junctor_problems(option, node, f"{where}.{junctor}")


def _junctor_problems(option: dict[str, Any], outer: dict[str, Any], where: str) -> Iterator[str]:
    for key in _FORBIDDEN_IN_JUNCTORS:
        if key in option:
            yield f"{where}: `{key}` inside a junctor"
    for key, child in option.get("properties", {}).items():
        if key not in outer.get("properties", {}):
            yield f"{where}.{key}: not declared outside the junctor"
        else:
            yield from _junctor_problems(child, outer["properties"][key], f"{where}.{key}")


@pytest.mark.parametrize(("group", "kind"), sorted(SCHEMAS))
def test_schema_is_structural(group: str, kind: str) -> None:
    schema = SCHEMAS[(group, kind)]
    assert list(_structural_problems(schema, kind)) == []
    assert schema["properties"]["metadata"] == {"type": "object"}, "only metadata's type may be specified"


def test_structural_check_catches_a_ref_and_an_untyped_node() -> None:
    bad = {"type": "object", "properties": {"a": {"$ref": "#/x"}, "b": {"anyOf": [{"type": "string"}]}}}
    assert list(_structural_problems(bad, "x")) == [
        "x.a: uses $ref",
        "x.a: no type",
        "x.b: no type",
        "x.b.anyOf: `type` inside a junctor",
    ]


# ----------------------------------------------------------------------------------------------------
# The CRD accepts what the models accept


def test_every_known_manifest_is_covered() -> None:
    names = {name.split("#")[0] for name, _ in ACCEPTED}
    assert len(ACCEPTED) > 60
    assert any(name.startswith("tests/data/canaries/flagger-docs/") for name in names)
    assert any(name.startswith("deploy/examples/") for name in names)


@pytest.mark.parametrize(("name", "document"), ACCEPTED, ids=[name for name, _ in ACCEPTED])
def test_manifest_validates_against_its_crd(name: str, document: dict[str, Any]) -> None:
    assert schema_errors(document) == []


@pytest.mark.parametrize(
    ("file_name", "error"),
    [
        ("missing-target-ref.yaml", "spec: 'targetRef' is a required property"),
        ("missing-service-port.yaml", "spec.service: 'port' is a required property"),
        ("bad-analysis-interval.yaml", "spec.analysis.interval: '1h' does not match '^[0-9]+(m|s)'"),
        ("bad-alert-severity.yaml", "spec.analysis.alerts.0.severity: 'warning' is not one of"),
        ("missing-metric-template-query.yaml", "spec: 'query' is a required property"),
        ("missing-alert-provider-type.yaml", "spec: 'type' is a required property"),
        ("step-weight-out-of-range.yaml", "spec.analysis.stepWeight: 150 is greater than the maximum of 100"),
        ("alert-provider-without-address.yaml", "spec: {'type': 'slack'} is not valid under any of the given schemas"),
    ],
)
def test_crd_rejects_what_the_model_rejects(file_name: str, error: str) -> None:
    document = yaml.safe_load((DATA / "invalid" / file_name).read_text())
    assert any(message.startswith(error) for message in schema_errors(document)), schema_errors(document)


def test_crd_rejects_unknown_fields_and_accepts_knative_without_service() -> None:
    canary = {
        "apiVersion": "canaryflow.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, "prot": 1},
            "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10},
        },
    }
    assert schema_errors(canary) == ["spec.service: Additional properties are not allowed ('prot' was unexpected)"]

    del canary["spec"]["service"]  # type: ignore[attr-defined]
    assert schema_errors(canary) != []
    canary["spec"]["provider"] = "knative"  # type: ignore[index]
    canary["spec"]["targetRef"] = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"}  # type: ignore[index]
    assert schema_errors(canary) == []


# ----------------------------------------------------------------------------------------------------
# The translation itself, on a model made for it


class _Inner(BaseModel):
    """Inner docstring."""

    count: int = Field(1, ge=1, le=10)


class _Spec(BaseModel):
    documented: str | None = Field(None, description="Said   by the\n field.")
    port: int | str
    free: dict[str, Any] = {}
    anything: Any = None
    inner: _Inner | None = None
    inners: list[_Inner] = []
    mode: Literal["a", "b"] = "a"


class _Resource(BaseModel):
    spec: _Spec


def test_translation_inlines_models_drops_null_and_defaults_and_keeps_field_docs() -> None:
    assert spec_schema(_Resource) == {
        "type": "object",
        "required": ["port"],
        "properties": {
            "documented": {"description": "Said by the field.", "type": "string"},
            "port": {"x-kubernetes-int-or-string": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "anything": {"x-kubernetes-preserve-unknown-fields": True},
            "inner": {
                "description": "Inner docstring.",
                "type": "object",
                "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 10}},
            },
            "inners": {
                "type": "array",
                "items": {
                    "description": "Inner docstring.",
                    "type": "object",
                    "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 10}},
                },
            },
            "mode": {"type": "string", "enum": ["a", "b"]},
        },
    }


def test_translation_refuses_a_union_kubernetes_cannot_express() -> None:
    class Odd(BaseModel):
        value: int | list[str]

    class OddResource(BaseModel):
        spec: Odd

    with pytest.raises(UnsupportedSchema, match=r"spec\.value"):
        spec_schema(OddResource)


# ----------------------------------------------------------------------------------------------------
# What the status sink writes fits the status schema


@pytest.mark.parametrize("phase", [phase.value for phase in Phase])
def test_status_written_by_the_kubernetes_sink_validates(phase: str) -> None:
    report = StatusReport(
        workflow_id="release/test/podinfo",
        canary_api_version="canaryflow.dev/v1beta1",
        name="podinfo",
        namespace="test",
        target_kind="Deployment",
        target_name="podinfo",
        provider="istio",
        platform="kubernetes",
        revision="5d8f7c6b9",
        phase=phase,
        primary_weight=70,
        canary_weight=30,
        iterations=2,
        failed_checks=1,
        last_transition_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    status = build_status({"sessionAffinityCookie": "c=1"}, report, {"configmap/podinfo-config": "0a1b2c3d"})
    canary = {
        "apiVersion": "canaryflow.dev/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10},
        },
        "status": status,
    }
    assert schema_errors(canary) == []
    assert status["phase"] in SCHEMAS[(GROUP, "Canary")]["properties"]["status"]["properties"]["phase"]["enum"]


def test_status_schema_rejects_a_wrongly_typed_field() -> None:
    canary = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "podinfo"}, "service": {"port": 9898}},
        "status": {"phase": "Waiting", "canaryWeight": "30", "conditions": [{"type": "Promoted", "status": "Maybe"}]},
    }
    assert sorted(schema_errors(canary)) == [
        "status.canaryWeight: '30' is not of type 'integer'",
        "status.conditions.0.status: 'Maybe' is not one of ['True', 'False', 'Unknown']",
    ]


def test_every_description_and_rule_names_an_existing_field() -> None:
    definitions: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        definitions.update(kind.model.model_json_schema(by_alias=True, mode="validation")["$defs"])
    for model, key in [*_DESCRIPTIONS, *_VALIDATOR_RULES]:
        assert key in definitions[model]["properties"], f"{model}.{key} no longer exists"
    for model, (relaxed, _) in _OBJECT_RULES.items():
        assert set(relaxed) <= set(definitions[model].get("required", [])), model
