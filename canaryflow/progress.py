"""Live progress of a release, for `canaryflow release --wait` and the demo."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from temporalio.client import Client, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError

from canaryflow.shared import EXIT_OK, EXIT_ROLLED_BACK, SUCCESSFUL_END_PHASES


class FollowTimeout(Exception):
    pass


def state_table(state: Any) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("canary", f"{state.namespace}/{state.name}")
    table.add_row("phase", f"{state.phase}{' (paused by ' + state.paused_by + ')' if state.paused else ''}")
    table.add_row("revision", state.revision)
    table.add_row("strategy", state.strategy)
    table.add_row("weights", f"primary {state.primary_weight}% / canary {state.canary_weight}%")
    table.add_row("iterations", str(state.iterations))
    table.add_row("failed checks", f"{state.failed_checks}/{state.threshold}")
    if state.last_metrics:
        metrics = ", ".join(f"{k}={'no values' if v is None else f'{v:g}'}" for k, v in state.last_metrics.items())
        table.add_row("metrics", metrics)
    if state.waiting_gates:
        table.add_row("waiting gates", ", ".join(state.waiting_gates))
    if state.outcome:
        table.add_row("outcome", state.outcome)
    if state.decisions:
        table.add_row("last decision", state.decisions[-1].message)
    return table


async def follow(client: Client, workflow_id: str, timeout: float, out: Console, err: Console) -> int:
    """Show live progress until the release ends; 0 promoted, 1 rolled back."""
    from workflows.release import CanaryRelease

    handle = client.get_workflow_handle_for(CanaryRelease.run, workflow_id)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    result_task = asyncio.ensure_future(handle.result())
    interactive = out.is_terminal
    last_line = ""
    with Live(console=out, auto_refresh=False, transient=False) if interactive else _NoLive() as live:
        while not result_task.done():
            try:
                state = await handle.query(CanaryRelease.state)
                if interactive:
                    live.update(state_table(state), refresh=True)
                else:
                    line = f"{state.phase} weight {state.canary_weight}% failed checks {state.failed_checks}"
                    if line != last_line:
                        out.print(line, highlight=False)
                        last_line = line
            except (WorkflowQueryFailedError, RPCError):
                pass  # no worker yet, or the run is continuing as new
            if deadline is not None and time.monotonic() > deadline:
                result_task.cancel()
                raise FollowTimeout(f"gave up waiting after {timeout:g}s; the release goes on ({workflow_id})")
            await asyncio.wait([result_task], timeout=1.0)
    try:
        result = result_task.result()
    except WorkflowFailureError as failure:
        cause = failure.cause
        message = getattr(cause, "message", None) or str(cause)
        err.print(f"[red]rolled back:[/red] {message}", highlight=False, soft_wrap=True)
        return EXIT_ROLLED_BACK
    out.print(f"[green]{result.phase}[/green]: {result.message}", highlight=False)
    return EXIT_OK if result.phase in SUCCESSFUL_END_PHASES else EXIT_ROLLED_BACK


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def update(self, *args: object, **kwargs: object) -> None:
        return None
