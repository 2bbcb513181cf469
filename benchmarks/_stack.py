"""Shared by the local-stack benchmarks: a fresh stack on free loopback ports, a demo-app canary, probes.

Mirrors the e2e fixture (`tests/e2e/conftest.py`) without depending on test code: settings under a short temp
directory (HAProxy's unix sockets must fit in 107 bytes), `LocalStack.up()`, a connected client, and all
stopped by pid and removed at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError

from activities.routers import haproxy_config as hc
from activities.routers.haproxy import HAProxyFailure, runtime_command
from canaryflow.client import release_decisions, start_release
from canaryflow.loader import parse_resource
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from canaryflow.temporal_client import connect
from workers.local_stack import LocalStack
from workflows.model import Decision, ReleaseRequest

REQUIRED_TOOLS = ("haproxy", "prometheus", "hey")
NAMESPACE = "bench"
BAD_BEHAVIOUR = {"error_rate": 0.3}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class BenchStack:
    stack: LocalStack
    settings: Settings
    client: Client

    def canary(
        self, name: str, analysis: dict[str, Any], *, bad_versions: tuple[str, ...] = (), load_rps: int = 20
    ) -> Canary:
        """A LocalApp canary running the demo app on fresh ports, under load hooks that drive `load_rps`
        requests a second through its apex; `bad_versions` answer 30% errors."""
        behaviour = {version: BAD_BEHAVIOUR for version in bad_versions}
        service_port = free_port()
        hooks = self.load_hooks(service_port, requests_per_second=load_rps)
        analysis = {**analysis, "webhooks": [*analysis.get("webhooks", []), *hooks]}
        doc: dict[str, Any] = {
            "apiVersion": "canaryflow.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "provider": "haproxy",
                "targetRef": {"apiVersion": "canaryflow.dev/v1beta1", "kind": "LocalApp", "name": name},
                "service": {"port": service_port},
                "progressDeadlineSeconds": 30,
                "local": {
                    "command": [
                        "{python}",
                        "-m",
                        "canaryflow.demoapp",
                        "--port",
                        "{port}",
                        "--version",
                        "{version}",
                    ],
                    "version": "v1",
                    "env": {"DEMOAPP_BEHAVIOUR": json.dumps(behaviour)},
                    "primaryPort": free_port(),
                    "canaryPort": free_port(),
                    "routerMetricsPort": free_port(),
                },
                "analysis": analysis,
            },
        }
        resource = parse_resource(doc)
        assert isinstance(resource, Canary)
        return resource

    def load_hooks(self, service_port: int, *, requests_per_second: int = 20) -> list[dict[str, Any]]:
        """Flagger-style load through the apex: pre-rollout and rollout `cmd` hooks on the load tester."""
        workers = 2
        per_worker = requests_per_second // workers
        command = f"hey -z 5m -q {per_worker} -c {workers} http://127.0.0.1:{service_port}/"
        url = f"http://127.0.0.1:{self.settings.loadtester_port}/"
        hook = {"url": url, "timeout": "5s", "metadata": {"type": "cmd", "cmd": command}}
        return [
            {"name": "start-load", "type": "pre-rollout", **hook},
            {"name": "load", "type": "rollout", **hook},
        ]

    async def start(self, canary: Canary, image: str) -> str:
        request = ReleaseRequest(
            canary=canary,
            revision=image,
            image=image,
            requested_by="benchmark",
            min_interval_seconds=self.settings.min_interval_seconds,
        )
        started = await start_release(self.client, request, task_queue=self.settings.task_queue)
        return started.workflow_id

    async def finish(self, workflow_id: str) -> tuple[str, list[Decision]]:
        """Wait for the release; its final phase ("Succeeded" or "Failed") and its decision log."""
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            await handle.result()
            phase = "Succeeded"
        except WorkflowFailureError:
            phase = "Failed"
        return phase, await release_decisions(handle)


def haproxy_paths(settings: Settings, canary: Canary) -> hc.HAProxyPaths:
    return hc.haproxy_paths(settings.state_dir, canary.metadata.namespace, canary.metadata.name)


def haproxy_weights(paths: hc.HAProxyPaths) -> dict[str, int] | None:
    """Live server weights from the runtime socket, or None while HAProxy is not up."""
    try:
        command = f"get weight {hc.BACKEND}/{hc.PRIMARY}; get weight {hc.BACKEND}/{hc.CANARY}"
        output = runtime_command(paths, command)
    except HAProxyFailure:
        return None
    answers = [block.strip().split(" ", 1)[0] for block in output.strip().split("\n\n")]
    if len(answers) != 2 or not all(answer.isdigit() for answer in answers):
        return None
    return {hc.PRIMARY: int(answers[0]), hc.CANARY: int(answers[1])}


_CANARY_RESPONSES = re.compile(
    r"^haproxy_server_http_responses_total"
    r'\{proxy="backend",server="canary",code="(?P<code>[^"]+)"\} (?P<value>\S+)$',
    re.MULTILINE,
)


def canary_responses(client: httpx.Client, router_metrics_port: int) -> dict[str, int] | None:
    """HAProxy's per-code response counters of the canary server, from its exporter (no Prometheus lag)."""
    try:
        text = client.get(f"http://127.0.0.1:{router_metrics_port}/metrics", timeout=1.0).text
    except httpx.HTTPError:
        return None
    return {match["code"]: int(float(match["value"])) for match in _CANARY_RESPONSES.finditer(text)}


@asynccontextmanager
async def local_stack(*, min_interval_seconds: float = 1.0) -> AsyncIterator[BenchStack]:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install haproxy prometheus hey")
    root = Path(tempfile.mkdtemp(prefix="cfb-", dir="/tmp"))
    settings = Settings(
        state_dir=root,
        dev_port=free_port(),
        dev_ui_port=free_port(),
        metrics_server=f"http://127.0.0.1:{free_port()}",
        loadtester_port=free_port(),
        worker_metrics_bind=f"127.0.0.1:{free_port()}",
        min_interval_seconds=min_interval_seconds,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
    )
    stack = LocalStack(settings)
    try:
        stack.up()
        client = await connect(settings.model_copy(update={"temporal_address": stack.temporal.address}))
        yield BenchStack(stack=stack, settings=settings, client=client)
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
