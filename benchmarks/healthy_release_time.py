"""Wall time of a healthy release on the real local stack against its bare analysis time.

stepWeight 10, maxWeight 50, interval I, the builtin success rate under steady load. The bare analysis time is
the number of analysis intervals the release slept (its fired timers, from the history) times I; everything
else (initialisation, readiness waits, activities, workflow tasks, promotion) is overhead. The decision log
splits the wall time into stages; the history gives the time spent in each activity type (scheduled to
completed, retries included) and its attempts.

`uv run python benchmarks/healthy_release_time.py [--interval SECONDS] [--rps R]`; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from _stack import BenchStack, local_stack
from temporalio.api.enums.v1 import EventType

from workflows.model import Decision

STEP_WEIGHT = 10
MAX_WEIGHT = 50
VERSION = "v2"


def _analysis(interval: float) -> dict[str, Any]:
    success_rate = {
        "name": "request-success-rate",
        "interval": f"{interval:g}s",
        "thresholdRange": {"min": 99},
    }
    return {
        "interval": f"{interval:g}s",
        "threshold": 2,
        "stepWeight": STEP_WEIGHT,
        "maxWeight": MAX_WEIGHT,
        "metrics": [success_rate],
    }


def _first(decisions: list[Decision], message: str) -> datetime:
    return next(d.at for d in decisions if d.message.startswith(message))


@dataclass
class HistorySummary:
    fired_timers: int = 0
    first_task_started_after_seconds: float = 0.0  # from the workflow's start to its first workflow task
    activity_seconds: dict[str, float] = field(default_factory=dict)  # scheduled -> completed, per type
    activity_attempts: dict[str, int] = field(default_factory=dict)  # attempts, per type (retries included)


async def _history(bench: BenchStack, workflow_id: str) -> HistorySummary:
    summary = HistorySummary()
    scheduled: dict[int, tuple[str, float]] = {}
    started_at: float | None = None
    first_task: float | None = None
    async for event in bench.client.get_workflow_handle(workflow_id).fetch_history_events():
        at = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started_at = at
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and first_task is None:
            first_task = at
            summary.first_task_started_after_seconds = round(at - (started_at or at), 3)
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            summary.fired_timers += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activity_type = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (activity_type, at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            name = scheduled[attributes.scheduled_event_id][0]
            summary.activity_attempts[name] = summary.activity_attempts.get(name, 0) + attributes.attempt
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name, since = scheduled[event.activity_task_completed_event_attributes.scheduled_event_id]
            summary.activity_seconds[name] = round(summary.activity_seconds.get(name, 0.0) + at - since, 3)
    return summary


async def measure(bench: BenchStack, interval: float, rps: int) -> dict[str, Any]:
    canary = bench.canary("healthy", _analysis(interval), load_rps=rps)
    started_at = time.time()
    started = time.monotonic()
    workflow_id = await bench.start(canary, VERSION)
    phase, decisions = await bench.finish(workflow_id)
    wall = time.monotonic() - started
    history = await _history(bench, workflow_id)
    intervals = history.fired_timers
    bare = intervals * interval
    marks = {
        "progressing": _first(decisions, "phase Progressing").timestamp(),
        "first_step": next(d.at for d in decisions if " canary weight " in d.message).timestamp(),
        "promoting": _first(decisions, "phase Promoting").timestamp(),
        "succeeded": _first(decisions, "phase Succeeded").timestamp(),
    }
    overhead = wall - bare
    return {
        "benchmark": "healthy_release_time",
        "config": {
            "interval_seconds": interval,
            "step_weight": STEP_WEIGHT,
            "max_weight": MAX_WEIGHT,
            "load_requests_per_second": rps,
        },
        "phase": phase,
        "wall_seconds": round(wall, 3),
        "analysis_intervals": intervals,
        "bare_analysis_seconds": round(bare, 3),
        "overhead_seconds": round(overhead, 3),
        "overhead_percent": round(overhead / bare * 100, 1) if bare else None,
        "stages_seconds": {
            "start_to_progressing": round(marks["progressing"] - started_at, 3),
            "progressing_to_first_step": round(marks["first_step"] - marks["progressing"], 3),
            "first_step_to_promoting": round(marks["promoting"] - marks["first_step"], 3),
            "promoting_to_succeeded": round(marks["succeeded"] - marks["promoting"], 3),
            "succeeded_to_result": round(started_at + wall - marks["succeeded"], 3),
        },
        "first_workflow_task_after_seconds": history.first_task_started_after_seconds,
        "activity_seconds": history.activity_seconds,
        "activity_attempts": history.activity_attempts,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--rps", type=int, default=20, help="load through the apex, requests per second")
    args = parser.parse_args()
    async with local_stack() as bench:
        result = await measure(bench, args.interval, args.rps)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
