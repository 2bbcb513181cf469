"""Recorded releases replay on the current CanaryRelease: a change that would break running releases fails.

The histories in `histories/` come from `record_histories.py` (read its docstring before touching them).
Replay uses the worker's sandbox configuration and data converter, so it runs the code a worker would run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import NondeterminismError

from activities import contracts as c
from canaryflow import shared
from workers.worker import SANDBOX_PASSTHROUGH_MODULES
from workflows import ALL_WORKFLOWS
from workflows.model import ReleaseRequest, ReleaseResult
from workflows.release import CanaryRelease

pytestmark = pytest.mark.workflow

HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORIES_DIR.glob("*.json"))
# How each recorded release ended; the corpus must keep one of each.
EXPECTED_ENDINGS = {
    "succeeded": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    "rolled-back": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    "approved": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    "cancelled": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    "new-revision": EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
}


def load_history(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    started = data["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId", path.stem), data)


def replayer(*workflows: type) -> Replayer:
    return Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH_MODULES)
        ),
    )


@workflow.defn(name=shared.WORKFLOW_TYPE)
class CanaryReleaseWithUnguardedStep(CanaryRelease):
    """An incompatible change: one more activity before the first one, without `workflow.patched`."""

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseResult:  # the SDK wants run on the defn class
        return await super().run(request)

    async def _initialize(self) -> bool:
        await self._act(c.ACT_ROUTER_GET_ROUTES, self._target(), result_type=c.Routes, summary="read routes")
        return await super()._initialize()


@workflow.defn(name=shared.WORKFLOW_TYPE)
class CanaryReleaseWithPatchedStep(CanaryRelease):
    """The same change done right: releases recorded before it take the old path."""

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseResult:  # the SDK wants run on the defn class
        return await super().run(request)

    async def _initialize(self) -> bool:
        if workflow.patched("read-routes-before-initializing"):
            await self._act(c.ACT_ROUTER_GET_ROUTES, self._target(), result_type=c.Routes, summary="read routes")
        return await super()._initialize()


def test_the_corpus_keeps_one_history_per_kind_of_release() -> None:
    endings = {path.stem: load_history(path).events[-1].event_type for path in HISTORIES}
    assert {name: endings.get(name) for name in EXPECTED_ENDINGS} == EXPECTED_ENDINGS
    approved = [event.event_type for event in load_history(HISTORIES_DIR / "approved.json").events]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED in approved


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_recorded_release_replays_on_the_current_workflow(path: Path) -> None:
    await replayer(*ALL_WORKFLOWS).replay_workflow(load_history(path), raise_on_replay_failure=True)


async def test_an_activity_added_without_a_patch_fails_replay() -> None:
    history = load_history(HISTORIES_DIR / "succeeded.json")

    with pytest.raises(NondeterminismError, match="TMPRL1100"):
        await replayer(CanaryReleaseWithUnguardedStep).replay_workflow(history, raise_on_replay_failure=True)


async def test_the_same_activity_behind_workflow_patched_replays() -> None:
    history = load_history(HISTORIES_DIR / "succeeded.json")

    await replayer(CanaryReleaseWithPatchedStep).replay_workflow(history, raise_on_replay_failure=True)
