"""The `canaryflow` command as a user runs it: exit codes, one-line errors, and a release driven end to end
against a real Temporal dev server (the CLI is a subprocess; the worker serves a recording in-memory platform)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from canaryflow.cli import app
from tests.workflow.fakes import FakePlatform
from workflows import ALL_WORKFLOWS

DATA = Path(__file__).parents[1] / "data" / "canaries"
INVALID = DATA / "invalid"
EXPECTED: dict[str, dict[str, str]] = yaml.safe_load((INVALID / "expected.yaml").read_text())
runner = CliRunner()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_reports_each_invalid_file_with_its_field_and_exit_2(name: str) -> None:
    result = runner.invoke(app, ["validate", "-f", str(INVALID / name)])
    assert result.exit_code == 2, result.output
    expected = EXPECTED[name]
    lines = [line for line in result.output.splitlines() if expected["message"] in line]
    assert lines, result.output
    if expected["path"]:
        assert any(f": {expected['path']}: " in line for line in lines), result.output
    assert "Traceback" not in result.output


def test_validate_accepts_flagger_examples_and_multi_document_files() -> None:
    files = sorted((DATA / "valid").glob("*.yaml"))
    result = runner.invoke(app, ["validate", *[arg for f in files for arg in ("-f", str(f))]])
    assert result.exit_code == 0, result.output
    assert "ok  Canary test/podinfo" in result.output


def test_release_with_an_invalid_file_exits_2_and_starts_nothing() -> None:
    env = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}  # unreachable: proves validation happens before connecting
    result = runner.invoke(app, ["release", "-f", str(INVALID / "unknown-key-typo.yaml")], env=env)
    assert result.exit_code == 2
    assert "spec.analysis.stepWieght: unknown field" in result.output


def test_release_with_an_unresolved_template_exits_2(tmp_path: Path) -> None:
    canary = yaml.safe_load((DATA / "valid" / "istio-canary.yaml").read_text())
    canary["spec"]["analysis"]["metrics"] = [
        {"name": "errors", "templateRef": {"name": "error-rate"}, "thresholdRange": {"max": 1}}
    ]
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(canary))
    result = runner.invoke(app, ["release", "-f", str(path)], env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.exit_code == 2
    assert "MetricTemplate test/error-rate not found" in result.output


def test_unreachable_temporal_exits_3_with_one_line() -> None:
    result = runner.invoke(
        app, ["release", "-f", str(DATA / "valid" / "istio-canary.yaml")], env={"TEMPORAL_ADDRESS": "127.0.0.1:1"}
    )
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == ["error: cannot reach Temporal at 127.0.0.1:1: Connection refused"]


# ----------------------------------------------------------------------------------------------------------------
# End to end on the dev server


def _canary_file(tmp_path: Path, name: str, analysis: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1s",
                "threshold": 2,
                "stepWeight": 25,
                "maxWeight": 50,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}],
                **analysis,
            },
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def _cli(env: WorkflowEnvironment, task_queue: str, *args: str) -> tuple[int, str, str]:
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "CANARYFLOW_TASK_QUEUE": task_queue,
        "CANARYFLOW_MIN_INTERVAL_SECONDS": "1",
        "CANARYFLOW_IDENTITY": "ci-bot",
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "canaryflow.cli",
        *args,
        env=variables,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.integration
async def test_release_wait_promotes_and_status_history_list_show_it(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    platform = FakePlatform()
    task_queue = f"cli-{uuid.uuid4()}"
    name = f"web-{uuid.uuid4().hex[:6]}"
    path = _canary_file(tmp_path, name, {})
    async with Worker(dev_env.client, task_queue=task_queue, workflows=ALL_WORKFLOWS, activities=platform.activities()):
        code, out, err = await _cli(dev_env, task_queue, "release", "-f", str(path), "--image", "web:2", "--wait")
        assert code == 0, out + err
        assert f"release canary/ci/{name} revision web:2" in out
        assert "Succeeded" in out
        assert platform.canary_weights() == [25, 50, 0]
        assert platform.primary_revision == "web:2"

        code, out, err = await _cli(dev_env, task_queue, "status", name, "-n", "ci", "-o", "json")
        assert code == 0, err
        state = json.loads(out)
        assert (state["phase"], state["revision"], state["canary_weight"]) == ("Succeeded", "web:2", 0)

        code, out, err = await _cli(dev_env, task_queue, "history", name, "-n", "ci", "-o", "yaml")
        assert code == 0, err
        messages = [entry["message"] for entry in yaml.safe_load(out)]
        assert "phase Promoting" in messages and messages[-1].startswith("Promotion completed")

        code, out, err = await _cli(dev_env, task_queue, "approve", name, "-n", "ci")
        assert code == 1
        assert "approve refused: release has ended (completed, phase Succeeded)" in err

        for _ in range(20):  # visibility is eventually consistent
            code, out, err = await _cli(dev_env, task_queue, "list", "-n", "ci", "-o", "json")
            rows = [row for row in json.loads(out) if row["name"] == name]
            if rows and rows[0]["phase"] == "Succeeded":
                break
            await asyncio.sleep(0.5)
        assert rows and rows[0]["phase"] == "Succeeded" and rows[0]["revision"] == "web:2"


@pytest.mark.integration
async def test_release_wait_exits_1_with_the_rollback_reason(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    platform = FakePlatform(metric=lambda name, n: 80.0)
    task_queue = f"cli-{uuid.uuid4()}"
    name = f"api-{uuid.uuid4().hex[:6]}"
    path = _canary_file(tmp_path, name, {})
    async with Worker(dev_env.client, task_queue=task_queue, workflows=ALL_WORKFLOWS, activities=platform.activities()):
        code, out, err = await _cli(dev_env, task_queue, "release", "-f", str(path), "--image", "api:9", "--wait")
    assert code == 1, out + err
    assert "rolled back: Failed checks threshold reached 2" in err
    assert platform.route_history[-1] == (100, 0, False)
    assert platform.canary_replicas == 0


@pytest.mark.integration
async def test_manual_gate_is_approved_from_the_cli(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    platform = FakePlatform()
    task_queue = f"cli-{uuid.uuid4()}"
    name = f"shop-{uuid.uuid4().hex[:6]}"
    path = _canary_file(
        tmp_path, name, {"webhooks": [{"name": "release-manager", "type": "confirm-promotion", "url": "manual"}]}
    )
    async with Worker(dev_env.client, task_queue=task_queue, workflows=ALL_WORKFLOWS, activities=platform.activities()):
        code, out, err = await _cli(dev_env, task_queue, "release", "-f", str(path), "--image", "shop:3")
        assert code == 0, err
        for _ in range(60):
            code, out, err = await _cli(dev_env, task_queue, "status", name, "-n", "ci", "-o", "json")
            if code == 0 and json.loads(out)["phase"] == "WaitingPromotion":
                break
            await asyncio.sleep(0.5)
        assert json.loads(out)["waiting_gates"] == ["confirm-promotion"]
        code, out, err = await _cli(
            dev_env, task_queue, "approve", name, "-n", "ci", "--gate", "confirm-promotion", "--reason", "LGTM"
        )
        assert code == 0, err
        assert "approve accepted" in out
        handle = dev_env.client.get_workflow_handle(f"canary/ci/{name}")
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result["phase"] == "Succeeded"
        code, out, err = await _cli(dev_env, task_queue, "history", name, "-n", "ci", "-o", "json")
    gate_entries = [e for e in json.loads(out) if e["kind"] == "gate"]
    assert any(e["actor"] == "ci-bot" and "LGTM" in e["message"] for e in gate_entries), gate_entries


@pytest.mark.integration
async def test_dev_runs_temporal_with_ui_and_a_worker_then_stops_cleanly(tmp_path: Path) -> None:
    import httpx

    from tests.conftest import free_port

    port, ui_port = free_port(), free_port()
    variables = {
        **os.environ,
        "CANARYFLOW_STATE_DIR": str(tmp_path / "state"),
        "CANARYFLOW_DEV_PORT": str(port),
        "CANARYFLOW_DEV_UI_PORT": str(ui_port),
        "COLUMNS": "200",
    }
    variables.pop("TEMPORAL_ADDRESS", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "canaryflow.cli",
        "dev",
        env=variables,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "Web UI" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            assert line, "canaryflow dev exited early"
            banner += line.decode()
        assert f"127.0.0.1:{port}" in banner
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{ui_port}/")).status_code == 200
        # The worker registered nothing unusual and `list` works against the embedded server.
        listing = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "canaryflow.cli",
            "list",
            "-o",
            "json",
            env=variables,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(listing.communicate(), timeout=60)
        assert listing.returncode == 0, err.decode()
        assert json.loads(out) == []
        assert (tmp_path / "state" / "temporal.db").exists()
    finally:
        if process.returncode is None:
            process.terminate()
        code = await asyncio.wait_for(process.wait(), timeout=60)
    assert code == 0
    pid_file = tmp_path / "state" / "temporal.pid"
    assert not pid_file.exists()
