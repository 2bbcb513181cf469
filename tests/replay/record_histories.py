"""Record the replay corpus: one real history per kind of release, written to tests/replay/histories/.

    uv run python -m tests.replay.record_histories            # every scenario
    uv run python -m tests.replay.record_histories cancelled  # only the ones named

Each scenario runs a release on a fresh dev server (the in-memory fake platform, real webhook and alert
activities against a local HTTP receiver, 1 s intervals) and writes `handle.fetch_history().to_json()`.
`tests/replay/test_replay.py` replays every file against the current `CanaryRelease`.

When to regenerate. These files stand for releases already running in production: a workflow change that no
longer replays one of them would break those releases mid-flight (TMPRL1100, the workflow sticks in RUNNING).
So:
- Never regenerate to make a failing replay test pass. A failure means the change is not backwards compatible:
  guard it with `workflow.patched("<change-id>")` (old histories take the old branch) and keep these files.
- After a change that is guarded by `workflow.patched`, *add* histories that take the new branch (record them
  under new names, keep the old ones) so both branches stay covered.
- Regenerate an existing file only once no release recorded with the old code can still be running (for
  example, after the patch is deprecated with `workflow.deprecate_patch` and every older release finished),
  or when adding a new scenario.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from canaryflow.client import release_state, send_command, start_release
from canaryflow.settings import Settings
from canaryflow.shared import SEARCH_ATTRIBUTES
from tests.conftest import free_port, temporal_bin
from tests.helpers.http_receiver import HttpReceiver, RecordedRequest, ScriptedResponse
from tests.workflow.fakes import FakePlatform
from tests.workflow.harness import canary, request, slack_provider
from workers.worker import build_worker
from workflows import ALL_WORKFLOWS
from workflows.model import Command, ReleaseRequest, ReleaseResult
from workflows.release import CanaryRelease

HISTORIES_DIR = Path(__file__).parent / "histories"
GATE_PATH = "/gate"  # the receiver answers 403 here: a confirm-* gate stays closed until a human approves

Release = WorkflowHandle[CanaryRelease, ReleaseResult]


@dataclass(frozen=True)
class Scenario:
    name: str
    analysis: dict[str, Any]
    platform: Callable[[], FakePlatform]
    # Event hooks and alerts add an activity per event; two scenarios are enough to cover them.
    notifications: bool
    # Drives the running release (approve, cancel, retarget...) and waits for its end.
    drive: Callable[[Client, Release, ReleaseRequest, str], Awaitable[None]]


async def run_to_end(client: Client, handle: Release, req: ReleaseRequest, task_queue: str) -> None:
    await handle.result()


async def fail_to_end(client: Client, handle: Release, req: ReleaseRequest, task_queue: str) -> None:
    try:
        await handle.result()
    except WorkflowFailureError:
        return
    raise AssertionError("the release was expected to fail")


async def wait_until(handle: Release, condition: Callable[[Any], bool], what: str) -> None:
    for _ in range(600):
        if condition(await release_state(handle)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


async def approve_promotion(client: Client, handle: Release, req: ReleaseRequest, task_queue: str) -> None:
    await wait_until(handle, lambda s: "confirm-promotion" in s.waiting_gates, "promotion waits for approval")
    result = await send_command(handle, "approve", Command(identity="alice", reason="dashboards look good"))
    assert result.accepted, result.message
    await handle.result()


async def cancel_at_weight_20(client: Client, handle: Release, req: ReleaseRequest, task_queue: str) -> None:
    await wait_until(handle, lambda s: s.canary_weight == 20, "the canary gets 20%")
    await handle.cancel()
    await fail_to_end(client, handle, req, task_queue)


async def retarget_at_weight_20(client: Client, handle: Release, req: ReleaseRequest, task_queue: str) -> None:
    await wait_until(handle, lambda s: s.canary_weight == 20, "the canary gets 20%")
    # CI starting the next revision while this one analyses: signal-with-start reaches the running release.
    await start_release(client, req.model_copy(update={"revision": "rev-3"}), task_queue=task_queue)
    await handle.result()


def failing_success_rate() -> FakePlatform:
    return FakePlatform(metric=lambda name, n: 50.0 if name == "request-success-rate" else 100.0)


def initialized_only() -> FakePlatform:
    return FakePlatform(initialize_result=c.InitializeResult(needs_analysis=False, primary_bootstrapped=True))


SCENARIOS = [
    Scenario("succeeded", {}, FakePlatform, True, run_to_end),
    Scenario("rolled-back", {"threshold": 1}, failing_success_rate, True, fail_to_end),
    Scenario("approved", {"gate": True}, FakePlatform, False, approve_promotion),
    Scenario("cancelled", {}, FakePlatform, False, cancel_at_weight_20),
    Scenario("new-revision", {}, FakePlatform, False, retarget_at_weight_20),
    # Recorded after the `status-reports` patch: status.report activities and InitializeResult answers.
    Scenario("reported-succeeded", {}, FakePlatform, True, run_to_end),
    Scenario("reported-cancelled", {}, FakePlatform, False, cancel_at_weight_20),
    Scenario("reported-initialized", {}, initialized_only, False, run_to_end),
]


def scenario_request(scenario: Scenario, receiver: HttpReceiver) -> ReleaseRequest:
    """stepWeight 20 up to 60, pre-rollout/rollout/post-rollout hooks; event hooks and alerts if asked."""
    hooks: list[dict[str, Any]] = [
        {"name": "smoke", "type": "pre-rollout", "url": receiver.url_for("/pre-rollout")},
        {"name": "load", "type": "rollout", "url": receiver.url_for("/rollout")},
        {"name": "cleanup", "type": "post-rollout", "url": receiver.url_for("/post-rollout")},
    ]
    alerts: list[dict[str, Any]] = []
    if scenario.notifications:
        hooks.append({"name": "audit", "type": "event", "url": receiver.url_for("/event")})
        alerts.append({"name": "on-call", "severity": "info", "providerRef": {"name": "on-call"}})
    if scenario.analysis.get("gate"):
        hooks.append({"name": "release-manager", "type": "confirm-promotion", "url": receiver.url_for(GATE_PATH)})
    analysis = {k: v for k, v in scenario.analysis.items() if k != "gate"}
    spec = canary({"interval": "1s", "maxWeight": 60, "webhooks": hooks, "alerts": alerts, **analysis})
    spec.metadata.name = f"podinfo-{scenario.name}"
    provider = slack_provider(receiver.url_for("/slack"))
    return request(spec, min_interval_seconds=1, alert_providers={"test/on-call": provider})


def answer(incoming: RecordedRequest) -> ScriptedResponse:
    return ScriptedResponse(status=403 if incoming.path == GATE_PATH else 200, body="ok")


async def record(env: WorkflowEnvironment, scenario: Scenario, receiver: HttpReceiver) -> Path:
    task_queue = f"record-{uuid.uuid4()}"
    settings = Settings(task_queue=task_queue, temporal_address=env.client.service_client.config.target_host)
    req = scenario_request(scenario, receiver)
    worker = build_worker(env.client, settings, workflows=ALL_WORKFLOWS, activities=scenario.platform().activities())
    async with worker:
        handle = (await start_release(env.client, req, task_queue=task_queue)).handle
        await asyncio.wait_for(scenario.drive(env.client, handle, req, task_queue), timeout=60)
        history = await handle.fetch_history()
    path = HISTORIES_DIR / f"{scenario.name}.json"
    path.write_text(history.to_json() + "\n")
    return path


async def main(names: list[str]) -> None:
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {[s.name for s in SCENARIOS]}")
    HISTORIES_DIR.mkdir(exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(),
        port=free_port(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
    )
    try:
        with HttpReceiver() as receiver:
            receiver.handler = answer
            for scenario in SCENARIOS:
                if not names or scenario.name in names:
                    print(f"recorded {await record(env, scenario, receiver)}")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
