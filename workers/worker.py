"""The Temporal worker process: runs canaryflow's workflows and activities on the task queue.

`python -m workers.worker` (or `canaryflow worker`) runs until SIGTERM/SIGINT, then lets in-flight activities
finish for up to `graceful_shutdown_seconds` before exiting 0.

With `worker_metrics_bind` set, http://<bind>/metrics serves the release metrics (Flagger's `flagger_canary_*`
families and `canaryflow_*`) followed by the Temporal SDK's `temporal_*` families. The SDK can only export through
its own HTTP server, so that one listens on a loopback port and every scrape of ours includes its text.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from canaryflow.logging import configure_logging
from canaryflow.settings import Settings, load_settings
from canaryflow.temporal_client import TemporalUnavailable, connect, metrics_runtime

log = logging.getLogger("canaryflow.worker")

# Imported once by the worker and shared with the sandbox instead of being re-imported per workflow run:
# our own deterministic models and contracts, and heavy third-party libraries activities pull in.
SANDBOX_PASSTHROUGH_MODULES = (
    "canaryflow",
    "activities",
    "yaml",
    "httpx",
    "kubernetes",
    "prometheus_api_client",
    "datadog_api_client",
    "boto3",
    "botocore",
    "prometheus_client",
)

EXIT_TEMPORAL_UNAVAILABLE = 3


def build_worker(
    client: Client,
    settings: Settings,
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable[..., Any]] | None = None,
) -> Worker:
    """A worker for `settings.task_queue`; defaults to every canaryflow workflow and activity."""
    if workflows is None:
        from workflows import ALL_WORKFLOWS

        workflows = ALL_WORKFLOWS
    if activities is None:
        from activities.platforms import register_platforms
        from activities.registry import default_activities

        register_platforms(settings)
        activities = default_activities()
    # Sync activities (e.g. the blocking kubernetes client) need threads; size them like the activity slots.
    needs_threads = any(not _is_async_callable(activity) for activity in activities)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(workflows),
        activities=list(activities),
        activity_executor=(
            ThreadPoolExecutor(settings.max_concurrent_activities, thread_name_prefix="activity")
            if needs_threads
            else None
        ),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=settings.graceful_shutdown_seconds),
        # A killed worker's releases move to another worker after this, instead of the SDK's 10 s default.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH_MODULES)
        ),
    )


async def run_worker(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable[..., Any]] | None = None,
) -> None:
    """Poll until SIGTERM/SIGINT (handled on the main thread) or `stop` is set, then shut down gracefully.

    `ready` is set once the worker polls. Raises TemporalUnavailable if the server cannot be reached.
    """
    stop = stop or asyncio.Event()
    with _stop_on_signals(stop):
        async with _metrics_endpoint(settings.worker_metrics_bind) as runtime:
            await _poll_until_stopped(settings, runtime, ready, stop, workflows, activities)
    log.info("worker stopped")


async def _poll_until_stopped(
    settings: Settings,
    runtime: Runtime | None,
    ready: asyncio.Event | None,
    stop: asyncio.Event,
    workflows: Sequence[type] | None,
    activities: Sequence[Callable[..., Any]] | None,
) -> None:
    client = await connect(settings, runtime=runtime)
    if settings.register_search_attributes:
        await _register_search_attributes(client, settings)
    worker = build_worker(client, settings, workflows=workflows, activities=activities)
    async with worker:
        log.info(
            "worker polling task queue %s on %s (namespace %s)",
            settings.task_queue,
            settings.temporal_address,
            settings.temporal_namespace,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("worker stopping; in-flight activities get up to %ss", settings.graceful_shutdown_seconds)


async def _register_search_attributes(client: Client, settings: Settings) -> None:
    """Make the CanaryPhase/... search attributes exist; a cluster that forbids it (Temporal Cloud) only warns."""
    from canaryflow.devserver import ensure_search_attributes

    try:
        added = await ensure_search_attributes(client, settings.temporal_namespace)
    except RPCError as error:
        log.warning("could not register search attributes (%s); register them with the operator CLI", error.message)
        return
    if added:
        log.info("registered search attributes %s", ", ".join(added))


@asynccontextmanager
async def _metrics_endpoint(bind: str) -> AsyncIterator[Runtime | None]:
    """Serve the metrics at `bind` while the worker runs; yields the Runtime whose SDK metrics the endpoint merges
    (None when `bind` is empty: no endpoint, the SDK's default runtime)."""
    if not bind:
        yield None
        return
    from activities.status.metrics import register_metrics_sink
    from activities.status.metrics_endpoint import METRICS_PATH, MetricsEndpoint

    sdk_address = f"127.0.0.1:{_free_loopback_port()}"
    runtime = metrics_runtime(sdk_address)
    endpoint = MetricsEndpoint(bind, register_metrics_sink().registry, sdk_address)
    endpoint.start()
    log.info("serving metrics at http://%s%s", bind, METRICS_PATH)
    try:
        yield runtime
    finally:
        endpoint.stop()


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into `stop.set()`; signal handlers can only be installed on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, json_format=settings.log_format == "json")
    try:
        asyncio.run(run_worker(settings))
    except TemporalUnavailable as err:
        print(f"canaryflow worker: {err}", file=sys.stderr, flush=True)
        # os._exit: the SDK's Rust runtime threads may still be unwinding a failed connect, and a normal
        # interpreter shutdown under them was seen to segfault (about 1 run in 4).
        os._exit(EXIT_TEMPORAL_UNAVAILABLE)


if __name__ == "__main__":
    main()
