"""The kind end-to-end script is valid bash (and shellcheck-clean when shellcheck is installed); its manifests load."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from canaryflow.loader import load_files
from canaryflow.spec import Canary

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
SCRIPT = HERE / "run.sh"


def test_script_parses_with_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert SCRIPT.stat().st_mode & 0o111, "run.sh must be executable"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_script_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_e2e_canary_needs_no_mesh_and_no_prometheus() -> None:
    result = load_files([HERE / "canary.yaml"])
    assert result.errors == []
    (canary,) = result.resources
    assert isinstance(canary, Canary)
    assert canary.spec.provider == "kubernetes"
    assert canary.spec.analysis is not None
    assert canary.spec.analysis.metrics == [] and canary.spec.analysis.webhooks == []
    assert canary.spec.analysis.strategy == "blue-green"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_e2e_kustomization_puts_podinfo_and_its_canary_in_namespace_test() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(HERE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    objects = [document for document in yaml.safe_load_all(result.stdout) if document]
    assert sorted((o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects) == [
        ("Canary", "podinfo", "test"),
        ("Deployment", "podinfo", "test"),
        ("HorizontalPodAutoscaler", "podinfo", "test"),
    ]
    container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "podinfod"  # run.sh sets the new image on this container


def test_temporal_manifest_serves_the_address_the_script_configures() -> None:
    documents = [d for d in yaml.safe_load_all((HERE / "temporal.yaml").read_text()) if d]
    service = next(d for d in documents if d["kind"] == "Service")
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("temporal", "temporal")
    assert {"name": "grpc", "port": 7233, "targetPort": "grpc"} in service["spec"]["ports"]
    assert "temporal.address=temporal.temporal:7233" in SCRIPT.read_text()
