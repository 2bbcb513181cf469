"""Builders and a runner for release workflow tests on the time-skipping server."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canaryflow.client import StartedRelease, start_release
from canaryflow.loader import parse_resource
from canaryflow.spec import AlertProvider, Canary
from tests.helpers.http_receiver import HttpReceiver, RecordedRequest, ScriptedResponse
from tests.workflow.fakes import FakePlatform
from workflows import ALL_WORKFLOWS
from workflows.model import ReleaseRequest, ReleaseResult, ReleaseState
from workflows.release import ERR_ROLLED_BACK, CanaryRelease

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
    request: ReleaseRequest  # as started: the canary name made unique per test

    @property
    def handle(self) -> WorkflowHandle[CanaryRelease, ReleaseResult]:
        return self.started.handle

    async def state(self) -> ReleaseState:
        return await self.handle.query(CanaryRelease.state)

    async def phases(self) -> list[str]:
        state = await self.state()
        return [d.message.removeprefix("phase ") for d in state.decisions if d.kind == "phase"]

    async def rolled_back(self) -> ApplicationError:
        """Await the end of a release that must have rolled back; the workflow fails with ReleaseRolledBack."""
        try:
            result = await self.handle.result()
        except WorkflowFailureError as failure:
            cause = failure.cause
            assert isinstance(cause, ApplicationError), cause
            assert cause.type == ERR_ROLLED_BACK, cause
            assert (await self.handle.describe()).status == WorkflowExecutionStatus.FAILED
            return cause
        raise AssertionError(f"the release did not roll back: {result}")


def messages(state: ReleaseState, kind: str | None = None) -> list[str]:
    """The decision log's messages, optionally of one kind (event, warning, command, gate, metric, webhook, phase)."""
    return [d.message for d in state.decisions if kind is None or d.kind == kind]


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
        try:
            yield Running(env=env, platform=platform, task_queue=task_queue, started=started, request=req)
        finally:
            # The test server's clock is shared and stops while any workflow task waits for a worker: a release a
            # failed test left running would freeze every later test.
            with contextlib.suppress(RPCError):
                await started.handle.terminate(reason="test finished")


# --------------------------------------------------------------------------------------------------------------
# Webhooks and mid-release observation


def webhook(name: str, hook_type: str, url: str, **fields: Any) -> dict[str, Any]:
    """A Canary webhook entry; short timeouts keep the real HTTP calls of workflow tests fast."""
    return {"name": name, "type": hook_type, "url": url, "timeout": "1s", **fields}


@dataclass
class HookServer:
    """A real HTTP receiver answering per path (200 unless told otherwise); the answers can change mid-test."""

    receiver: HttpReceiver
    answers: dict[str, ScriptedResponse] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.receiver.url_for(path)

    def answer(self, path: str, status: int = 200, *, body: str = "", delay_seconds: float = 0.0) -> None:
        self.answers["/" + path.lstrip("/")] = ScriptedResponse(status=status, body=body, delay_seconds=delay_seconds)

    def calls(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.receiver.requests if r.path == "/" + path.lstrip("/")]

    def payloads(self, path: str) -> list[Any]:
        return [r.json for r in self.calls(path)]

    def _respond(self, request: RecordedRequest) -> ScriptedResponse:
        return self.answers.get(request.path, ScriptedResponse(status=200))


@contextmanager
def hook_server() -> Iterator[HookServer]:
    with HttpReceiver() as receiver:
        server = HookServer(receiver)
        receiver.handler = server._respond
        yield server


async def advance_until(
    run: Running, predicate: Callable[[ReleaseState], bool], *, step_seconds: float = 5, limit_seconds: float = 900
) -> ReleaseState:
    """Advance virtual time in small steps until the queried state satisfies `predicate`; fail after the limit."""
    waited = 0.0
    while True:
        state = await run.state()
        if predicate(state):
            return state
        if waited >= limit_seconds:
            raise AssertionError(f"state not reached after {limit_seconds:g}s of virtual time: {state.phase}")
        await run.env.sleep(step_seconds)
        waited += step_seconds
