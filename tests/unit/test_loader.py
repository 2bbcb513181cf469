"""Loading YAML files and reporting every problem with its path, message and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryflow.loader import (
    SpecError,
    SpecIssue,
    canary_from_yaml,
    issues_from_validation_error,
    load_files,
    load_text,
    parse_resource,
    parse_yaml,
)
from canaryflow.spec import Canary, MetricTemplate

pytestmark = pytest.mark.unit

INVALID_DIR = Path(__file__).parents[1] / "data" / "canaries" / "invalid"
EXPECTED: dict[str, dict[str, str]] = yaml.safe_load((INVALID_DIR / "expected.yaml").read_text())

TEMPLATE = """\
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: error-rate
spec:
  provider:
    type: prometheus
    address: http://prometheus:9090
  query: vector(1)
"""

CANARY = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: {interval}
    threshold: 5
    stepWeight: {step_weight}
"""


def canary_text(interval: str = "1m", step_weight: int = 10) -> str:
    return CANARY.format(interval=interval, step_weight=step_weight)


def all_issues(errors: list[SpecError]) -> list[tuple[str, SpecIssue]]:
    return [(error.source, issue) for error in errors for issue in error.issues]


def test_every_invalid_file_has_an_expectation() -> None:
    files = {path.name for path in INVALID_DIR.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_corpus_reports_the_expected_issue(name: str) -> None:
    expected = EXPECTED[name]
    result = load_files([INVALID_DIR / name])
    issues = all_issues(result.errors)
    matching = [
        issue
        for source, issue in issues
        if issue.path == expected["path"]
        and expected["message"] in issue.message
        and expected.get("source", "") in source
    ]
    assert matching, f"expected {expected}, got {[str(error) for error in result.errors]}"
    assert all(issue.fix for _, issue in issues), "every issue tells the user how to fix it"


def test_spec_error_prints_one_line_per_issue_with_source_path_message_and_fix() -> None:
    result = load_text(canary_text(interval="1h", step_weight=150), "canary.yaml")
    (error,) = result.errors
    assert error.source == "canary.yaml#1"
    lines = str(error).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("canary.yaml#1: spec.analysis.interval: `1h` is not a valid duration. Fix: ")
    assert lines[1].startswith("canary.yaml#1: spec.analysis.stepWeight: 150 is out of range")
    assert ". Fix: use a percentage from 1 to 100" in lines[1]


def test_parse_yaml_returns_resources_of_every_document_skipping_empty_ones() -> None:
    text = f"---\n{TEMPLATE}---\n---\n# only a comment\n---\n{canary_text()}"
    resources = parse_yaml(text, "stream.yaml")
    assert [type(resource) for resource in resources] == [MetricTemplate, Canary]


def test_document_numbers_in_sources_count_empty_documents() -> None:
    text = f"{TEMPLATE}---\n---\n{canary_text(interval='soon')}"
    result = load_text(text, "stream.yaml")
    assert len(result.resources) == 1
    assert [error.source for error in result.errors] == ["stream.yaml#3"]


def test_parse_yaml_raises_the_first_spec_error() -> None:
    text = f"{canary_text(interval='soon')}---\n{canary_text(step_weight=0)}"
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, "two.yaml")
    assert caught.value.source == "two.yaml#1"


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_yaml("kind: Canary\nmetadata:\n  name: [unclosed\n", "broken.yaml")
    (issue,) = caught.value.issues
    assert caught.value.source == "broken.yaml"
    assert "YAML syntax error at line" in issue.message


def test_load_files_collects_errors_from_every_file_and_document(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(f"{canary_text(interval='x')}---\n{TEMPLATE}---\n{canary_text(step_weight=101)}")
    second = tmp_path / "b.yaml"
    second.write_text("kind: Canray\n")
    missing = tmp_path / "missing.yaml"
    result = load_files([first, second, missing])
    assert [type(resource) for resource in result.resources] == [MetricTemplate]
    assert [error.source for error in result.errors] == [
        f"{first}#1",
        f"{first}#3",
        f"{second}#1",
        str(missing),
    ]
    assert result.errors[-1].issues[0].message == "file not found"
    assert not result.ok


def test_load_files_reads_yaml_files_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(canary_text())
    (tmp_path / "a.yaml").write_text(TEMPLATE)
    (tmp_path / "notes.txt").write_text("not yaml: [")
    result = load_files([tmp_path])
    assert result.ok
    assert [type(resource) for resource in result.resources] == [MetricTemplate, Canary]


def test_kubectl_list_items_are_loaded_with_their_position_in_the_source() -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [yaml.safe_load(TEMPLATE), yaml.safe_load(canary_text(step_weight=500))],
    }
    result = load_text(yaml.safe_dump(listing), "export.yaml")
    assert [type(resource) for resource in result.resources] == [MetricTemplate]
    assert [error.source for error in result.errors] == ["export.yaml#1/items[1]"]


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (["a", "b"], "", "the document is a list, not a mapping"),
        ("text", "", "the document is a str, not a mapping"),
        ({"apiVersion": "flagger.app/v1beta1"}, "kind", "required field `kind` is missing"),
        ({"apiVersion": "apps/v1", "kind": "Deployment"}, "kind", "unsupported kind `Deployment`"),
    ],
)
def test_parse_resource_rejects_documents_that_are_not_our_resources(data: Any, path: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_resource(data, "doc.yaml#1")
    assert caught.value.source == "doc.yaml#1"
    assert (caught.value.issues[0].path, caught.value.issues[0].message) == (path, message)


def test_unknown_kind_also_reports_a_foreign_api_version() -> None:
    with pytest.raises(SpecError) as caught:
        parse_resource({"apiVersion": "apps/v1", "kind": "Deployment"})
    assert [issue.path for issue in caught.value.issues] == ["kind", "apiVersion"]


def test_parse_resource_dispatches_on_kind() -> None:
    assert isinstance(parse_resource(yaml.safe_load(TEMPLATE)), MetricTemplate)
    assert isinstance(parse_resource(yaml.safe_load(canary_text())), Canary)


def test_unknown_key_without_a_close_match_lists_the_accepted_keys() -> None:
    doc = yaml.safe_load(canary_text())
    doc["spec"]["service"]["colour"] = "blue"
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    (issue,) = caught.value.issues
    assert issue.path == "spec.service.colour"
    assert issue.fix.startswith("remove it; accepted keys here: name, port, portName, targetPort")


def test_unknown_key_suggests_the_closest_key() -> None:
    doc = yaml.safe_load(canary_text())
    doc["spec"]["analysis"]["webhooks"] = [{"name": "x", "url": "http://a/", "disableTls": True}]
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    (issue,) = caught.value.issues
    assert issue.path == "spec.analysis.webhooks[0].disableTls"
    assert issue.fix == "did you mean `disableTLS`? Rename the key"


def test_a_value_matching_no_union_member_is_reported_once() -> None:
    doc = yaml.safe_load(canary_text())
    doc["spec"]["service"]["targetPort"] = [8080]
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    (issue,) = caught.value.issues
    assert issue.path == "spec.service.targetPort"
    assert "int" in issue.fix and "str" in issue.fix


def test_all_problems_of_a_document_are_reported_together() -> None:
    doc = yaml.safe_load(canary_text(interval="forever", step_weight=0))
    del doc["metadata"]["name"]
    doc["spec"]["service"]["port"] = 70000
    doc["spec"]["analysis"]["webhooks"] = [{"type": "pre-rollout"}]
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    assert sorted(issue.path for issue in caught.value.issues) == [
        "metadata.name",
        "spec.analysis.interval",
        "spec.analysis.webhooks[0].name",
        "spec.analysis.webhooks[0].url",
        "spec.service.port",
    ]


def test_error_paths_follow_the_deprecated_canary_analysis_key() -> None:
    doc = yaml.safe_load(canary_text(step_weight=300))
    doc["spec"]["canaryAnalysis"] = doc["spec"].pop("analysis")
    with pytest.raises(SpecError) as caught:
        parse_resource(doc)
    assert [issue.path for issue in caught.value.issues] == ["spec.canaryAnalysis.stepWeight"]


def test_issues_from_validation_error_translates_model_errors_directly() -> None:
    from pydantic import ValidationError

    doc = yaml.safe_load(canary_text(step_weight=10))
    doc["spec"]["analysis"]["stepWeights"] = [10, 20]
    with pytest.raises(ValidationError) as caught:
        Canary.model_validate(doc)
    (issue,) = issues_from_validation_error(caught.value, Canary)
    assert issue.path == "spec.analysis"
    assert "(found `stepWeight`, `stepWeights`)" in issue.message
    assert "iterations" in issue.fix


def test_canary_from_yaml_requires_exactly_one_canary() -> None:
    assert canary_from_yaml(canary_text()).metadata.name == "podinfo"
    with pytest.raises(SpecError, match="expected exactly one Canary, found 0"):
        canary_from_yaml(TEMPLATE)
    with pytest.raises(SpecError, match="expected exactly one Canary, found 2"):
        canary_from_yaml(f"{canary_text()}---\n{canary_text()}")
    with pytest.raises(SpecError, match="stepWeight"):
        canary_from_yaml(canary_text(step_weight=-1))


def test_objects_of_other_api_groups_next_to_ours_are_skipped_not_rejected() -> None:
    text = """
apiVersion: v1
kind: Secret
metadata: {name: slack-url, namespace: test}
stringData: {address: https://hooks.slack.com/services/x}
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: on-call, namespace: test}
spec: {type: slack, secretRef: {name: slack-url}}
"""
    result = load_text(text, "alerts.yaml")
    assert result.ok
    assert [r.kind for r in result.resources] == ["AlertProvider"]
    assert result.skipped == ["alerts.yaml#1 Secret/slack-url"]


def test_a_misspelled_kind_in_our_group_is_still_an_error() -> None:
    result = load_text("apiVersion: flagger.app/v1beta1\nkind: Canari\nmetadata: {name: x}\n", "c.yaml")
    assert not result.ok and not result.skipped
    assert "unsupported kind `Canari`" in str(result.errors[0])
