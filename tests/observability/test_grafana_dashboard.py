"""deploy/grafana/canaryflow-dashboard.json: valid, and every query reads families the worker exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.status.metrics import PrometheusStatusSink
from tests.observability.reports import report, scrape

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "canaryflow-dashboard.json"

FLAGGER_FAMILIES = {
    "flagger_canary_total",
    "flagger_canary_status",
    "flagger_canary_weight",
    "flagger_canary_duration_seconds",
    "flagger_canary_metric_analysis",
    "flagger_canary_successes_total",
    "flagger_canary_failures_total",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
# Values Grafana substitutes for the dashboard's variables, so promtool can parse the queries.
VARIABLES = {"$namespace": ".*", "$name": ".*", "$__rate_interval": "5m"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def variable_queries() -> list[str]:
    return [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords or label names."""
    if match := re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*).*\)\s*", expr):
        return {match.group(1)}
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for identifier in re.finditer(r"[a-zA-Z_:][\w:]*", text):
        is_call = text[identifier.end() :].lstrip().startswith("(")
        if not is_call and identifier.group() not in PROMQL_WORDS:
            names.add(identifier.group())
    return names


def exported_sample_names() -> set[str]:
    """Every sample name the sink exports once it has seen progressing, promoted and failed releases."""
    sink = PrometheusStatusSink()
    sink.apply(report(last_metrics={"request-success-rate": 99.0}))
    sink.apply(report(phase="Succeeded", finished=True, sequence=2))
    sink.apply(report(workflow_id="canary/test/web", target_name="web", phase="Failed", finished=True))
    return {name for name, _ in scrape(sink.registry)}


def test_the_dashboard_is_grafana_json_with_queries() -> None:
    board = dashboard()

    assert board["uid"] == "canaryflow-releases"
    assert board["templating"]["list"][0]["type"] == "datasource"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    data_panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert data_panels and all(panel["targets"] for panel in data_panels)
    assert all(target["expr"].strip() for panel in data_panels for target in panel["targets"])


def test_metric_name_extraction() -> None:
    expr = 'sum by (le) (increase(flagger_canary_duration_seconds_bucket{name=~"$name"}[1d])) / on(name) up'
    assert metric_names(expr) == {"flagger_canary_duration_seconds_bucket", "up"}
    assert metric_names('label_values(flagger_canary_status{namespace=~"$namespace"}, name)') == {
        "flagger_canary_status"
    }
    assert metric_names("count(flagger_canary_status == 2) or vector(0)") == {"flagger_canary_status"}


def test_every_query_reads_only_families_the_worker_exports() -> None:
    exported = exported_sample_names()
    read = set().union(*(metric_names(expr) for expr in panel_exprs() + variable_queries()))

    assert read  # an empty dashboard reads nothing, trivially "only exported families"
    assert read - exported == set()


def test_every_flagger_family_has_a_panel() -> None:
    read = set().union(*(metric_names(expr) for expr in panel_exprs()))
    families = {re.sub(r"_(bucket|sum|count)$", "", name) if "duration" in name else name for name in read}

    assert families >= FLAGGER_FAMILIES


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, expr in enumerate(panel_exprs()):
        for variable in sorted(VARIABLES, key=len, reverse=True):
            expr = expr.replace(variable, VARIABLES[variable])
        rules.append({"record": f"canaryflow:dashboard_query_{index}", "expr": expr})
    assert rules
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    check = subprocess.run(
        ["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=30, check=False
    )

    assert check.returncode == 0, check.stdout + check.stderr
