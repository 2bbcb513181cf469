"""`canaryflow worker` as a process: JSON log lines on stderr and the release families on its /metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import free_port
from tests.integration.test_worker_process import worker_env
from tests.observability.reports import get, parse_exposition, series

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).parents[2]
CANARYFLOW = Path(sys.executable).parent / "canaryflow"


def scrape_when_up(url: str, process: subprocess.Popen[str], deadline_seconds: float = 20) -> str:
    deadline = time.monotonic() + deadline_seconds
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            status, _, text = get(url, timeout=2)
            if status == 200 and "temporal_" in text:  # the SDK's families appear once the worker's client exists
                return text
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"{url} never served the worker's metrics"
        time.sleep(0.2)


def test_the_worker_logs_json_and_serves_release_and_sdk_metrics(time_skipping_env: WorkflowEnvironment) -> None:
    bind = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [str(CANARYFLOW), "worker"],
        cwd=PROJECT_ROOT,
        env=worker_env(
            TEMPORAL_ADDRESS=time_skipping_env.client.service_client.config.target_host,
            CANARYFLOW_TASK_QUEUE=f"test-{uuid.uuid4()}",
            CANARYFLOW_WORKER_METRICS_BIND=bind,
            CANARYFLOW_LOG_FORMAT="json",
            CANARYFLOW_REGISTER_SEARCH_ATTRIBUTES="false",
            CANARYFLOW_KUBERNETES="off",
            CANARYFLOW_GRACEFUL_SHUTDOWN_SECONDS="2",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = scrape_when_up(f"http://{bind}/metrics", process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    samples = parse_exposition(text)
    assert len(series(samples, "canaryflow_info")) == 1
    assert any(name.startswith("process_") for name, _ in samples)
    lines = [json.loads(line) for line in stderr.splitlines()]
    polling = [line for line in lines if line["message"].startswith("worker polling task queue")]
    assert polling and polling[0]["logger"] == "canaryflow.worker" and polling[0]["level"] == "INFO"
