"""`canaryflow demo` (what `make demo` runs) as a user runs it: exit 0, a promoted and a rolled-back release."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_demo_promotes_the_good_version_and_rolls_back_the_bad_one() -> None:
    missing = [tool for tool in ("haproxy", "prometheus", "hey") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run `make system-packages`")
    state = Path(tempfile.mkdtemp(prefix="cf-demo-", dir="/tmp"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CANARYFLOW_"))},
        "CANARYFLOW_STATE_DIR": str(state),
        "CANARYFLOW_DEV_PORT": str(free_port()),
        "CANARYFLOW_DEV_UI_PORT": str(free_port()),
        "CANARYFLOW_METRICS_SERVER": f"http://127.0.0.1:{free_port()}",
        "CANARYFLOW_WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}",
        "COLUMNS": "200",
    }
    # The demo's load generator targets the demo canary's fixed apex port from deploy/local/demo-canary.yaml.
    try:
        done = subprocess.run(
            [sys.executable, "-m", "canaryflow.cli", "demo", "--no-keep"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "canaryflow.cli", "local", "down"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(state, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "promoted" in done.stdout and "rolled back" in done.stdout
    assert "Failed checks threshold reached" in done.stdout + done.stderr
