"""A platform for worker-process tests whose record outlives the worker process.

Every workload/router/metric activity appends a `start` line before it acts and an `end` line after, to
`calls.jsonl` in the record directory: one JSON object per line, each written with a single `write()` on an
O_APPEND descriptor, so a SIGKILLed worker loses nothing it had written and a line is never torn. A `start`
without an `end` is a call that was in flight when the worker died.

Router weights and workload state live in `state.json`, replaced atomically (write a temporary file, then
`os.replace`), so a reader never sees half a state. Tests steer the platform through `control.json`, read
on every metric query, so a metric can be flipped while a release runs. Webhooks and alerts are the product's
real activities.

    platform = RecordingPlatform(record_dir, delays={ACT_WORKLOAD_SCALE_TO_ZERO: 20})  # in the worker
    record = Record(record_dir)                                                          # in the test
    record.control(PlatformControl(metric_values={"request-success-rate": 50}))
    assert record.canary_weights() == [20, 40, 60, 0]
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from activities import contracts as c
from activities.notifiers.activity import send_alert
from activities.status.activity import report_status
from activities.webhooks import call_webhook

RECORD_FILE = "calls.jsonl"
STATE_FILE = "state.json"
CONTROL_FILE = "control.json"

# What the metrics answer unless control.json says otherwise: a healthy canary.
HEALTHY_METRICS: dict[str, float] = {"request-success-rate": 99.9, "request-duration": 100.0}
HEARTBEAT_EVERY_SECONDS = 0.2


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallRecord(_Model):
    """One line of calls.jsonl."""

    event: Literal["start", "end"]
    activity: str
    workflow_id: str
    activity_id: str
    attempt: int
    pid: int
    at: float  # unix seconds
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def call_key(self) -> tuple[str, str, int]:
        """Identifies one attempt of one activity: its start and end lines share it."""
        return (self.workflow_id, self.activity_id, self.attempt)


class PlatformState(_Model):
    primary_weight: int = 100
    canary_weight: int = 0
    mirrored: bool = False
    canary_replicas: int = 0
    primary_revision: str = ""


class PlatformControl(_Model):
    metric_values: dict[str, float] = Field(default_factory=dict)  # overrides HEALTHY_METRICS per metric name


class RecordingPlatform:
    """The workload, router and metrics activities of one test, recording into `record_dir`.

    `delays` makes an activity sleep (heartbeating) between its `start` line and its effect, which widens the
    window in which a test can kill the worker while that activity is in flight.
    """

    def __init__(self, record_dir: Path, delays: Mapping[str, float] | None = None) -> None:
        self._record_dir = record_dir
        self._delays = dict(delays or {})
        record_dir.mkdir(parents=True, exist_ok=True)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.initialize,
            self.check_ready,
            self.scale_from_zero,
            self.scale_to_zero,
            self.promote,
            self.reconcile,
            self.set_routes,
            self.get_routes,
            self.query,
            call_webhook,
            send_alert,
            report_status,  # no sink registered in this worker: reports are accepted and dropped
        ]

    @activity.defn(name=c.ACT_WORKLOAD_INITIALIZE)
    async def initialize(self, target: c.ReleaseTarget) -> None:
        async with self._call(c.ACT_WORKLOAD_INITIALIZE, {"revision": target.revision}):
            self._update_state(lambda s: s.model_copy(update={"primary_revision": s.primary_revision or "bootstrap"}))

    @activity.defn(name=c.ACT_WORKLOAD_CHECK_READY)
    async def check_ready(self, check: c.ReadinessCheck) -> None:
        async with self._call(c.ACT_WORKLOAD_CHECK_READY, {"workload": check.workload}):
            pass

    @activity.defn(name=c.ACT_WORKLOAD_SCALE_FROM_ZERO)
    async def scale_from_zero(self, target: c.ReleaseTarget) -> None:
        async with self._call(c.ACT_WORKLOAD_SCALE_FROM_ZERO, {"revision": target.revision}):
            self._update_state(lambda s: s.model_copy(update={"canary_replicas": 1}))

    @activity.defn(name=c.ACT_WORKLOAD_SCALE_TO_ZERO)
    async def scale_to_zero(self, target: c.ReleaseTarget) -> None:
        async with self._call(c.ACT_WORKLOAD_SCALE_TO_ZERO, {"revision": target.revision}):
            self._update_state(lambda s: s.model_copy(update={"canary_replicas": 0}))

    @activity.defn(name=c.ACT_WORKLOAD_PROMOTE)
    async def promote(self, target: c.ReleaseTarget) -> None:
        async with self._call(c.ACT_WORKLOAD_PROMOTE, {"revision": target.revision}):
            self._update_state(lambda s: s.model_copy(update={"primary_revision": target.revision}))

    @activity.defn(name=c.ACT_ROUTER_RECONCILE)
    async def reconcile(self, target: c.ReleaseTarget) -> None:
        async with self._call(c.ACT_ROUTER_RECONCILE, {"revision": target.revision}):
            pass

    @activity.defn(name=c.ACT_ROUTER_SET_ROUTES)
    async def set_routes(self, request: c.SetRoutes) -> None:
        routes = request.routes
        async with self._call(c.ACT_ROUTER_SET_ROUTES, routes.model_dump()):
            self._update_state(
                lambda s: s.model_copy(
                    update={
                        "primary_weight": routes.primary_weight,
                        "canary_weight": routes.canary_weight,
                        "mirrored": routes.mirrored,
                    }
                )
            )

    @activity.defn(name=c.ACT_ROUTER_GET_ROUTES)
    async def get_routes(self, target: c.ReleaseTarget) -> c.Routes:
        state = read_state(self._record_dir)
        return c.Routes(primary_weight=state.primary_weight, canary_weight=state.canary_weight, mirrored=state.mirrored)

    @activity.defn(name=c.ACT_METRIC_QUERY)
    async def query(self, query: c.MetricQuery) -> c.MetricValue:
        control = read_control(self._record_dir)
        value = control.metric_values.get(query.metric_name, HEALTHY_METRICS.get(query.metric_name, 0.0))
        async with self._call(c.ACT_METRIC_QUERY, {"metric": query.metric_name, "value": value}):
            return c.MetricValue(value=value, query=query.metric_name)

    def _call(self, name: str, detail: dict[str, Any]) -> _RecordedCall:
        return _RecordedCall(self._record_dir / RECORD_FILE, name, detail, self._delays.get(name, 0.0))

    def _update_state(self, change: Callable[[PlatformState], PlatformState]) -> None:
        # No await between read and write: calls on this worker's event loop cannot interleave here.
        _write_atomically(self._record_dir / STATE_FILE, change(read_state(self._record_dir)).model_dump_json())


class _RecordedCall:
    """`async with`: record `start`, sleep the delay (heartbeating), run the body, record `end`."""

    def __init__(self, path: Path, name: str, detail: dict[str, Any], delay: float) -> None:
        self._path, self._name, self._detail, self._delay = path, name, detail, delay

    async def __aenter__(self) -> None:
        self._append("start")
        deadline = time.monotonic() + self._delay
        while (remaining := deadline - time.monotonic()) > 0:
            activity.heartbeat(self._name)
            await asyncio.sleep(min(HEARTBEAT_EVERY_SECONDS, remaining))

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._append("end")

    def _append(self, event: Literal["start", "end"]) -> None:
        info = activity.info()
        record = CallRecord(
            event=event,
            activity=self._name,
            workflow_id=info.workflow_id or "",
            activity_id=info.activity_id,
            attempt=info.attempt,
            pid=os.getpid(),
            at=time.time(),
            detail=self._detail,
        )
        line = (record.model_dump_json() + "\n").encode()
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def read_state(record_dir: Path) -> PlatformState:
    path = record_dir / STATE_FILE
    return PlatformState.model_validate_json(path.read_text()) if path.exists() else PlatformState()


def read_control(record_dir: Path) -> PlatformControl:
    path = record_dir / CONTROL_FILE
    return PlatformControl.model_validate_json(path.read_text()) if path.exists() else PlatformControl()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class Record:
    """The test's view of a record directory: calls, state and control."""

    def __init__(self, record_dir: Path) -> None:
        self.dir = record_dir
        record_dir.mkdir(parents=True, exist_ok=True)

    def calls(self) -> list[CallRecord]:
        path = self.dir / RECORD_FILE
        if not path.exists():
            return []
        return [CallRecord.model_validate_json(line) for line in path.read_text().splitlines() if line]

    def finished(self, activity_name: str) -> list[CallRecord]:
        return [call for call in self.calls() if call.event == "end" and call.activity == activity_name]

    def started(self, activity_name: str) -> list[CallRecord]:
        return [call for call in self.calls() if call.event == "start" and call.activity == activity_name]

    def in_flight(self) -> list[CallRecord]:
        """Attempts that recorded `start` but no `end`: running now, or cut off by a dead worker."""
        calls = self.calls()
        ended = {call.call_key for call in calls if call.event == "end"}
        return [call for call in calls if call.event == "start" and call.call_key not in ended]

    def canary_weights(self) -> list[int]:
        """Canary weight of every route write that took effect, in order."""
        return [int(call.detail["canary_weight"]) for call in self.finished(c.ACT_ROUTER_SET_ROUTES)]

    def state(self) -> PlatformState:
        return read_state(self.dir)

    def control(self, control: PlatformControl) -> None:
        _write_atomically(self.dir / CONTROL_FILE, control.model_dump_json())

    def dump(self) -> str:
        """The whole record, for assertion messages."""
        lines = [
            f"{call.event:5} {call.activity:24} attempt {call.attempt} pid {call.pid} {call.detail}"
            for call in self.calls()
        ]
        return "\n".join([*lines, f"state: {self.state()}"])
