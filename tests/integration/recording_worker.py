"""`python -m tests.integration.recording_worker`: a real worker process serving the recording platform.

It is the product's worker (`build_worker` with every workflow, the product's sandbox and data converter)
whose workload/router/metric activities are the recording platform's and whose webhook/alert activities are
the real ones. Durability tests run it as a subprocess and SIGKILL it.

Environment:
    TEMPORAL_ADDRESS, CANARYFLOW_TASK_QUEUE  where to poll (the product's settings, see canaryflow.settings)
    RECORDING_DIR                            the record directory (required)
    RECORDING_DELAYS                         optional `activity=seconds,...` (`workload.scale_to_zero=20`):
                                             that activity sleeps so long (heartbeating) before it acts
    RECORDING_HEARTBEAT_TIMEOUT              optional seconds: schedule the recording platform's activities
                                             with this heartbeat timeout, so an attempt lost with a killed
                                             worker is retried after it, not after the 60 s start-to-close

SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import client, worker, workflow
from temporalio.worker import (
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from activities import contracts as c
from canaryflow.settings import load_settings
from canaryflow.temporal_client import connect
from tests.integration.recording_platform import RecordingPlatform
from workers.worker import build_worker
from workflows import ALL_WORKFLOWS

RECORDED_ACTIVITIES = frozenset(
    {
        c.ACT_WORKLOAD_INITIALIZE,
        c.ACT_WORKLOAD_CHECK_READY,
        c.ACT_WORKLOAD_SCALE_FROM_ZERO,
        c.ACT_WORKLOAD_SCALE_TO_ZERO,
        c.ACT_WORKLOAD_PROMOTE,
        c.ACT_ROUTER_RECONCILE,
        c.ACT_ROUTER_SET_ROUTES,
        c.ACT_ROUTER_GET_ROUTES,
        c.ACT_METRIC_QUERY,
    }
)


def parse_delays(text: str) -> dict[str, float]:
    """`"a=1.5,b=2"` -> `{"a": 1.5, "b": 2.0}`; empty text -> no delays."""
    delays: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, seconds = item.partition("=")
        delays[name.strip()] = float(seconds)
    return delays


class HeartbeatTimeoutInterceptor(client.Interceptor, worker.Interceptor):
    """Adds a heartbeat timeout to the recording platform's activities (the workflow sets none)."""

    def __init__(self, heartbeat_timeout: timedelta) -> None:
        self.heartbeat_timeout = heartbeat_timeout

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        timeout = self.heartbeat_timeout

        class _Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
                if input.activity in RECORDED_ACTIVITIES and input.heartbeat_timeout is None:
                    input = replace(input, heartbeat_timeout=timeout)
                return super().start_activity(input)

        class _Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound))

        return _Inbound


async def serve(record_dir: Path, delays: dict[str, float], heartbeat_timeout: timedelta | None) -> None:
    settings = load_settings()
    temporal = await connect(settings)
    if heartbeat_timeout is not None:
        # Interceptors given to the client are inherited by workers built on it.
        config = temporal.config()
        config["interceptors"] = [HeartbeatTimeoutInterceptor(heartbeat_timeout)]
        temporal = client.Client(**config)
    platform = RecordingPlatform(record_dir, delays)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(temporal, settings, workflows=ALL_WORKFLOWS, activities=platform.activities()):
        await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    heartbeat = os.environ.get("RECORDING_HEARTBEAT_TIMEOUT", "")
    asyncio.run(
        serve(
            Path(os.environ["RECORDING_DIR"]),
            parse_delays(os.environ.get("RECORDING_DELAYS", "")),
            timedelta(seconds=float(heartbeat)) if heartbeat else None,
        )
    )


if __name__ == "__main__":
    main()
