"""Builders and a runner for release workflow tests on the time-skipping server."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canaryflow.client import StartedRelease, start_release
from canaryflow.loader import parse_resource
from canaryflow.spec import AlertProvider, Canary
from tests.workflow.fakes import FakePlatform
from workflows import ALL_WORKFLOWS
from workflows.model import ReleaseRequest, ReleaseResult, ReleaseState
from workflows.release import CanaryRelease

BASE_CANARY: dict[str, Any] = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {
        "provider": "istio",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {
            "interval": "1m",
            "threshold": 2,
            "maxWeight": 50,
            "stepWeight": 20,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"},
            ],
        },
    },
}


def canary(analysis: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **spec: Any) -> Canary:
    data = copy.deepcopy(BASE_CANARY)
    for key in drop:
        data["spec"]["analysis"].pop(key, None)
    data["spec"]["analysis"].update(analysis or {})
    data["spec"].update(spec)
    resource = parse_resource(data)
    assert isinstance(resource, Canary)
    return resource


def request(c: Canary, revision: str = "rev-2", **kw: Any) -> ReleaseRequest:
    return ReleaseRequest(canary=c, revision=revision, requested_by="ci", **kw)


def slack_provider(url: str) -> AlertProvider:
    resource = parse_resource(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "on-call", "namespace": "test"},
            "spec": {"type": "slack", "channel": "alerts", "address": url},
        }
    )
    assert isinstance(resource, AlertProvider)
    return resource


@dataclass
class Running:
    env: WorkflowEnvironment
    platform: FakePlatform
    task_queue: str
    started: StartedRelease

    @property
    def handle(self) -> WorkflowHandle[CanaryRelease, ReleaseResult]:
        return self.started.handle

    async def state(self) -> ReleaseState:
        return await self.handle.query(CanaryRelease.state)

    async def phases(self) -> list[str]:
        state = await self.state()
        return [d.message.removeprefix("phase ") for d in state.decisions if d.kind == "phase"]


@asynccontextmanager
async def running_release(
    env: WorkflowEnvironment, platform: FakePlatform, req: ReleaseRequest
) -> AsyncIterator[Running]:
    task_queue = f"test-{uuid.uuid4()}"
    # Unique canary name per test: workflow ids are per canary and the test server is shared.
    req = req.model_copy(deep=True)
    req.canary.metadata.name = f"{req.canary.metadata.name}-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=task_queue, workflows=ALL_WORKFLOWS, activities=platform.activities()):
        started = await start_release(env.client, req, task_queue=task_queue)
        yield Running(env=env, platform=platform, task_queue=task_queue, started=started)
