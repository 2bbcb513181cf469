"""`spec.local`: how a LocalApp target's processes are run, and what `canaryflow validate` says when it is wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canaryflow.loader import SpecError, SpecIssue, parse_resource
from canaryflow.spec import CANARYFLOW_API_VERSION, Canary

pytestmark = pytest.mark.unit

DEMO_COMMAND = ["{python}", "-m", "canaryflow.demoapp", "--port", "{port}", "--version", "{version}"]


def local_doc(**local: Any) -> dict[str, Any]:
    return {
        "apiVersion": CANARYFLOW_API_VERSION,
        "kind": "Canary",
        "metadata": {"name": "demo", "namespace": "local"},
        "spec": {
            "provider": "haproxy",
            "targetRef": {"apiVersion": CANARYFLOW_API_VERSION, "kind": "LocalApp", "name": "demo"},
            "service": {"port": 18480},
            "local": {
                "command": DEMO_COMMAND,
                "version": "v1",
                "primaryPort": 18481,
                "canaryPort": 18482,
                "routerMetricsPort": 18483,
                **local,
            },
            "analysis": {"interval": "10s", "threshold": 2, "stepWeight": 10},
        },
    }


def issues_of(doc: dict[str, Any]) -> list[SpecIssue]:
    with pytest.raises(SpecError) as raised:
        parse_resource(doc, "test.yaml")
    return raised.value.issues


def only_issue(doc: dict[str, Any]) -> SpecIssue:
    issues = issues_of(doc)
    assert len(issues) == 1, issues
    return issues[0]


def test_local_block_maps_to_the_attributes_the_providers_use() -> None:
    doc = local_doc(env={"MODE": "{role}"}, workingDir="/srv/demo", readinessPath="/ready", metricsPath="")
    canary = parse_resource(doc)
    assert isinstance(canary, Canary)
    local = canary.spec.local
    assert local is not None
    assert local.command == DEMO_COMMAND
    assert (local.version, local.env, local.working_dir) == ("v1", {"MODE": "{role}"}, "/srv/demo")
    assert (local.primary_port, local.canary_port, local.router_metrics_port) == (18481, 18482, 18483)
    assert (local.readiness_path, local.metrics_path) == ("/ready", "")


def test_local_defaults() -> None:
    canary = parse_resource(local_doc())
    assert isinstance(canary, Canary) and canary.spec.local is not None
    local = canary.spec.local
    assert (local.readiness_path, local.metrics_path, local.working_dir, local.env) == (
        "/readyz",
        "/metrics",
        None,
        {},
    )


def test_local_dumps_back_with_camel_case_keys() -> None:
    canary = parse_resource(local_doc())
    dumped = canary.model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["local"]["primaryPort"] == 18481
    assert dumped["spec"]["local"]["routerMetricsPort"] == 18483
    assert "workingDir" not in dumped["spec"]["local"]


def test_placeholders_expand_in_every_argument_and_env_value() -> None:
    canary = parse_resource(
        local_doc(
            command=["{python}", "app.py", "--listen=127.0.0.1:{port}", "--tag={namespace}/{name}@{version}"],
            env={"ROLE": "{role}", "LITERAL": "{{port}}", "JSON": '{"v2": {"error_rate": 0.5}}'},
        )
    )
    assert isinstance(canary, Canary) and canary.spec.local is not None
    values = {
        "python": "/venv/bin/python",
        "port": "18482",
        "version": "v2",
        "role": "canary",
        "name": "demo",
        "namespace": "local",
    }
    assert canary.spec.local.command_for(values) == [
        "/venv/bin/python",
        "app.py",
        "--listen=127.0.0.1:18482",
        "--tag=local/demo@v2",
    ]
    assert canary.spec.local.env_for(values) == {
        "ROLE": "canary",
        "LITERAL": "{port}",
        "JSON": '{"v2": {"error_rate": 0.5}}',
    }


def test_a_local_app_without_local_is_rejected() -> None:
    doc = local_doc()
    del doc["spec"]["local"]
    issue = only_issue(doc)
    assert issue.path == "spec.local"
    assert "required field `local` is missing" in issue.message
    assert "primaryPort" in issue.fix


def test_local_on_a_kubernetes_target_is_rejected() -> None:
    doc = local_doc()
    doc["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"}
    issue = only_issue(doc)
    assert issue.path == "spec.local"
    assert "only applies to a `LocalApp` target, not to a `Deployment`" in issue.message
    assert "remove `local`" in issue.fix


def test_an_unknown_placeholder_in_the_command_names_the_argument_and_the_close_match() -> None:
    issue = only_issue(local_doc(command=["{python}", "-m", "app", "--port={prot}"]))
    assert issue.path == "spec.local.command[3]"
    assert issue.message == "unknown placeholder `{prot}` in `--port={prot}`"
    assert "Did you mean `{port}`?" in issue.fix
    assert "`{{prot}}` for a literal `{prot}`" in issue.fix


def test_an_unknown_placeholder_in_an_env_value_names_the_variable() -> None:
    issue = only_issue(local_doc(env={"IMAGE": "registry/app:{image}"}))
    assert issue.path == "spec.local.env.IMAGE"
    assert "unknown placeholder `{image}`" in issue.message


def test_a_placeholder_with_blanks_is_reported_rather_than_left_unexpanded() -> None:
    issue = only_issue(local_doc(command=["./app", "{ port }"]))
    assert issue.path == "spec.local.command[1]"
    assert "Did you mean `{port}`?" in issue.fix


def test_every_broken_placeholder_is_reported_at_once() -> None:
    issues = issues_of(local_doc(command=["./app", "{image}", "{tag}"], env={"A": "{who}"}))
    assert [issue.path for issue in issues] == [
        "spec.local.command[1]",
        "spec.local.command[2]",
        "spec.local.env.A",
    ]


@pytest.mark.parametrize(
    ("key", "port", "earlier"),
    [
        ("primaryPort", 18480, "service.port"),
        ("canaryPort", 18481, "local.primaryPort"),
        ("routerMetricsPort", 18482, "local.canaryPort"),
        ("routerMetricsPort", 18480, "service.port"),
    ],
)
def test_ports_must_all_differ(key: str, port: int, earlier: str) -> None:
    issue = only_issue(local_doc(**{key: port}))
    assert issue.path == f"spec.local.{key}"
    assert issue.message == f"port {port} is already used by `{earlier}`"
    assert "four different ports" in issue.fix


def test_ports_must_be_tcp_ports() -> None:
    issue = only_issue(local_doc(primaryPort=70000))
    assert issue.path == "spec.local.primaryPort"
    assert "out of range" in issue.message


@pytest.mark.parametrize(
    ("local", "path", "message"),
    [
        ({"command": []}, "spec.local.command", "command is empty"),
        ({"version": ""}, "spec.local.version", "version is empty"),
        ({"readinessPath": "readyz"}, "spec.local.readinessPath", "does not start with `/`"),
        ({"metricsPath": "metrics"}, "spec.local.metricsPath", "does not start with `/`"),
        ({"env": {"A=B": "x"}}, "spec.local.env.A=B", "not a valid environment variable name"),
    ],
)
def test_malformed_local_fields_are_reported(local: dict[str, Any], path: str, message: str) -> None:
    issue = only_issue(local_doc(**local))
    assert issue.path == path
    assert message in issue.message


def test_required_local_fields_are_reported_with_their_camel_case_path() -> None:
    doc = local_doc()
    local = copy.deepcopy(doc["spec"]["local"])
    del local["canaryPort"], local["version"]
    doc["spec"]["local"] = local
    paths = {issue.path for issue in issues_of(doc)}
    assert paths == {"spec.local.canaryPort", "spec.local.version"}
