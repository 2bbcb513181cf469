"""The real local stack for end-to-end tests: Temporal dev server, Prometheus, load tester and a worker process
(`workers.local_stack.LocalStack`) on free loopback ports, with per-canary HAProxy and demo-app processes started
by the release itself. Everything is stopped by pid at the end; tests assert no orphan is left."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from canaryflow.loader import parse_resource
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from canaryflow.temporal_client import connect
from tests.conftest import free_port
from workers.local_stack import LocalStack

REQUIRED = ("haproxy", "prometheus", "hey")


@dataclass
class Stack:
    stack: LocalStack
    settings: Settings
    client: Client

    def canary(self, name: str, analysis: dict[str, Any], *, version: str = "v1", **spec: Any) -> Canary:
        """A LocalApp canary on fresh ports running the demo app, with Flagger's analysis block given."""
        doc: dict[str, Any] = {
            "apiVersion": "canaryflow.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": "e2e"},
            "spec": {
                "provider": "haproxy",
                "targetRef": {"apiVersion": "canaryflow.dev/v1beta1", "kind": "LocalApp", "name": name},
                "service": {"port": free_port()},
                "progressDeadlineSeconds": 30,
                "local": {
                    "command": ["{python}", "-m", "canaryflow.demoapp", "--port", "{port}", "--version", "{version}"],
                    "version": version,
                    "env": {"DEMOAPP_BEHAVIOUR": '{"bad": {"error_rate": 0.3}, "slow": {"latency_ms": 300}}'},
                    "primaryPort": free_port(),
                    "canaryPort": free_port(),
                    "routerMetricsPort": free_port(),
                },
                "analysis": analysis,
                **spec,
            },
        }
        resource = parse_resource(doc)
        assert isinstance(resource, Canary)
        return resource

    def load_hook(self, canary_port: int, *, duration: str = "2m", extra_args: str = "") -> list[dict[str, Any]]:
        """Flagger-style load: pre-rollout + rollout `cmd` hooks on the stack's load tester, driving `hey`."""
        command = f"hey -z {duration} -q 10 -c 2 {extra_args} http://127.0.0.1:{canary_port}/".replace("  ", " ")
        url = f"http://127.0.0.1:{self.settings.loadtester_port}/"
        hook = {"url": url, "timeout": "5s", "metadata": {"type": "cmd", "cmd": command}}
        return [{"name": "start-load", "type": "pre-rollout", **hook}, {"name": "load", "type": "rollout", **hook}]

    def dump(self, path: Path) -> None:
        path.write_text(yaml.safe_dump({"settings": self.settings.model_dump(mode="json")}))


@pytest.fixture
def stack_settings() -> Iterator[Settings]:
    missing = [tool for tool in REQUIRED if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"missing {', '.join(missing)}: run `make system-packages` (apt-get install haproxy prometheus hey)"
        )
    # Short path: HAProxy's unix sockets must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="cf-", dir="/tmp"))
    yield Settings(
        state_dir=root,
        dev_port=free_port(),
        dev_ui_port=free_port(),
        metrics_server=f"http://127.0.0.1:{free_port()}",
        loadtester_port=free_port(),
        worker_metrics_bind=f"127.0.0.1:{free_port()}",
        min_interval_seconds=1,
        task_queue=f"e2e-{uuid.uuid4().hex[:8]}",
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def local_stack(stack_settings: Settings) -> AsyncIterator[Stack]:
    stack = LocalStack(stack_settings)
    try:
        stack.up()
        client = await connect(stack_settings.model_copy(update={"temporal_address": stack.temporal.address}))
        yield Stack(stack=stack, settings=stack_settings, client=client)
    finally:
        stack.down()
