"""Real releases on the local stack: the demo app as processes behind HAProxy, Prometheus, a Temporal worker.

Every test drives real traffic through HAProxy (`hey` from the load tester, and the test's own requests, which
tell the versions apart by the demo app's `X-Version` header) and ends with no process of the stack left.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from canaryflow.client import release_decisions, release_state
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    DURATION,
    INTERVAL_SECONDS,
    SCRAPE_INTERVAL_SECONDS,
    THRESHOLD,
    WeightRecorder,
    analysis,
    demo_canary,
    first_decision,
    live_weights,
    no_orphans,
    process_alive,
    processes,
    rolled_back,
    seconds_between,
    start,
    succeeded,
    versions_answering_async,
    wait_for_state,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


# Workflow tasks, activities and the query polling between a decision and the state the test reads.
SLACK_SECONDS = 2.0
INSIDER = {"x-canary": "insider"}


@pytest.fixture
async def stack(local_stack: Stack) -> AsyncIterator[Stack]:
    """The stack, brought down after the test; no process it started may be left."""
    async with no_orphans(local_stack) as checked:
        yield checked


async def test_good_release_moves_live_weights_step_by_step_and_promotes(stack: Stack) -> None:
    canary = demo_canary(stack, "good", analysis(stepWeight=20, maxWeight=60))
    service_port = canary.spec.service.port
    handle = await start(stack, canary, "v2")
    recorder = WeightRecorder(stack, canary, handle)
    recording = asyncio.create_task(recorder.run(timeout=60))

    await wait_for_state(handle, lambda s: s.canary_weight == 20, timeout=30)
    canary_app = processes(stack, canary)["canary"]
    assert canary_app["version"] == "v2" and canary_app["alive"]
    await recording
    await succeeded(handle, timeout=10)

    # The workflow's steps (its decision log) and what HAProxy really applied are the same, in the same order. The
    # sampled readings must show every step; the first may only be missed when sampling stalled for longer than it.
    advances = [
        re.fullmatch(r"Advance good\.e2e canary weight (\d+)", d.message) for d in await release_decisions(handle)
    ]
    assert [int(m.group(1)) for m in advances if m] == [20, 40, 60]
    gap = recorder.longest_gap_seconds()
    for readings in (recorder.state_canary_steps(), recorder.haproxy_canary_steps()):
        assert readings == [20, 40, 60, 0] or (readings == [40, 60, 0] and gap > 1.5), (readings, gap)
    assert not recorder.disagreements(), recorder.disagreements()[:5]
    assert all(s.haproxy is None or sum(s.haproxy) == 100 for s in recorder.samples)

    assert live_weights(stack, canary) == (100, 0)
    assert await versions_answering_async(service_port, 50) == {"v2": 50}
    apps = processes(stack, canary)
    assert "canary" not in apps
    assert not process_alive(canary_app["pid"])
    assert apps["primary"]["version"] == "v2" and apps["primary"]["alive"]


async def test_bad_release_rolls_back_within_threshold_intervals(stack: Stack) -> None:
    canary = demo_canary(stack, "bad", analysis(stepWeight=20, maxWeight=60))
    service_port = canary.spec.service.port
    handle = await start(stack, canary, "bad")  # DEMOAPP_BEHAVIOUR: version `bad` answers 30% errors
    recorder = WeightRecorder(stack, canary, handle)
    recording = asyncio.create_task(recorder.run(timeout=60))
    await wait_for_state(handle, lambda s: s.canary_weight == 20, timeout=30)
    canary_pid = processes(stack, canary)["canary"]["pid"]

    cause = await rolled_back(handle, timeout=60)
    await recording
    assert f"Failed checks threshold reached {THRESHOLD}" in cause.message
    state = await release_state(handle)
    assert state.phase == "Failed" and state.failed_checks == THRESHOLD
    assert any("success rate" in d.message and "< 99.00%" in d.message for d in state.decisions)
    assert recorder.haproxy_canary_steps() == [20, 0]

    first_failed = first_decision(state.decisions, lambda d: d.message.startswith("request-success-rate: Halt"))
    rolling_back = first_decision(state.decisions, lambda d: d.message.startswith("Rolling back bad.e2e"))
    failed = first_decision(state.decisions, lambda d: d.message == "phase Failed")
    primary_only = recorder.first_reading((100, 0), after=first_failed.at)
    assert primary_only is not None, "HAProxy was never seen back at 100/0"
    decided = seconds_between(first_failed.at, rolling_back.at)
    routed_back = seconds_between(first_failed.at, primary_only)
    finished = seconds_between(first_failed.at, failed.at)
    print(
        f"\nrollback latency after the first failed check: decided {decided:.2f}s, "
        f"HAProxy 100/0 {routed_back:.2f}s, phase Failed {finished:.2f}s"
    )
    bound = THRESHOLD * INTERVAL_SECONDS + SCRAPE_INTERVAL_SECONDS + SLACK_SECONDS
    assert max(decided, routed_back, finished) <= bound

    assert live_weights(stack, canary) == (100, 0)
    assert await versions_answering_async(service_port, 50) == {"v1": 50}
    apps = processes(stack, canary)
    assert "canary" not in apps and not process_alive(canary_pid)
    assert apps["primary"]["version"] == "v1" and apps["primary"]["alive"]


async def test_ab_release_routes_matching_requests_to_the_new_version(stack: Stack) -> None:
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    # The load carries the header, so the canary's metrics have traffic.
    canary = demo_canary(stack, "ab", analysis(iterations=3, match=match), load_args="-H 'x-canary: insider'")
    service_port = canary.spec.service.port
    handle = await start(stack, canary, "v2")

    await wait_for_state(handle, lambda s: s.iterations >= 1 and s.phase == "Progressing", timeout=30)
    insiders = await versions_answering_async(service_port, 30, INSIDER)
    others = await versions_answering_async(service_port, 30)
    outsiders = await versions_answering_async(service_port, 30, {"x-canary": "insider-not"})
    servers = live_weights(stack, canary)
    state = await release_state(handle)
    assert state.phase == "Progressing", "the analysis ended before the requests were sent: nothing was proven"
    assert insiders == {"v2": 30}
    assert others == {"v1": 30}
    assert outsiders == {"v1": 30}
    assert servers == (100, 0)  # A/B never shifts weighted traffic

    await succeeded(handle, timeout=60)
    assert await versions_answering_async(service_port, 20) == {"v2": 20}
    assert await versions_answering_async(service_port, 20, INSIDER) == {"v2": 20}
    assert "canary" not in processes(stack, canary)


async def test_blue_green_release_switches_all_traffic_then_promotes(stack: Stack) -> None:
    # Blue/green sends the canary no weighted traffic: the load goes to its port directly (Flagger's
    # `http://<name>-canary/` target), so only the app's own latency histogram has data to judge.
    bg_analysis = {"interval": f"{INTERVAL_SECONDS}s", "threshold": THRESHOLD, "iterations": 2, "metrics": [DURATION]}
    canary = demo_canary(stack, "bg", bg_analysis, load_target="canary")
    service_port = canary.spec.service.port
    handle = await start(stack, canary, "v2")

    await wait_for_state(handle, lambda s: s.iterations >= 1 and s.phase == "Progressing", timeout=30)
    during_iterations = await versions_answering_async(service_port, 30)
    servers_during_iterations = live_weights(stack, canary)
    state = await release_state(handle)
    assert state.canary_weight == 0 and state.phase == "Progressing"
    assert during_iterations == {"v1": 30}
    assert servers_during_iterations == (100, 0)

    switched = await wait_for_state(handle, lambda s: s.canary_weight == 100, timeout=30)
    assert switched.phase == "Progressing"
    after_switch = await versions_answering_async(service_port, 30)
    servers_after_switch = live_weights(stack, canary)
    state = await release_state(handle)
    assert state.phase == "Progressing", "promotion began before the requests were sent: nothing was proven"
    assert after_switch == {"v2": 30}
    assert servers_after_switch == (0, 100)

    await succeeded(handle, timeout=60)
    assert live_weights(stack, canary) == (100, 0)
    assert await versions_answering_async(service_port, 30) == {"v2": 30}
    apps = processes(stack, canary)
    assert "canary" not in apps and apps["primary"]["version"] == "v2"


async def test_blue_green_release_with_the_builtin_success_rate_succeeds(stack: Stack) -> None:
    bg_analysis = analysis(iterations=2)  # both builtins, as in Flagger's blue/green examples
    canary = demo_canary(stack, "bgsr", bg_analysis, load_target="canary")
    handle = await start(stack, canary, "v2")
    await succeeded(handle, timeout=60)


async def test_release_right_after_a_rollback_is_judged_on_its_own_traffic(stack: Stack) -> None:
    bad = demo_canary(stack, "again", analysis(stepWeight=20, maxWeight=40, threshold=1))
    await rolled_back(await start(stack, bad, "bad"), timeout=60)
    # The fix, released at once: same canary, same HAProxy (its counters still hold the errors), a healthy
    # version. Its 10 s metric windows must not reach back into the rolled-back release.
    # Threshold 2: reading back, its first two checks (about 2 and 4 s into the step) would both see the errors.
    # Prometheus already knows this HAProxy, so a healthy release sees no "no values" check here.
    good = bad.model_copy(deep=True)
    assert good.spec.analysis is not None
    good.spec.analysis.threshold = 2
    await succeeded(await start(stack, good, "v2"), timeout=60)
