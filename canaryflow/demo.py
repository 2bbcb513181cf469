"""`canaryflow demo`: the local stack, then a good release (promoted) and a bad one (rolled back)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from canaryflow.client import start_release
from canaryflow.loader import load_files
from canaryflow.progress import follow
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from canaryflow.temporal_client import connect

DEMO_CANARY = Path(__file__).resolve().parents[1] / "deploy" / "local" / "demo-canary.yaml"
DEMO_MIN_INTERVAL_SECONDS = 5.0
RELEASES = (("v2", "a good version: promoted step by step"), ("v3-bad", "a bad version: 30% errors, +250 ms"))


@dataclass
class Outcome:
    image: str
    expectation: str
    exit_code: int
    seconds: float
    workflow_id: str


async def run_demo(settings: Settings, out: Console, *, keep: bool = True) -> int:
    from workers.local_stack import LocalStack
    from workflows.model import ReleaseRequest

    stack = LocalStack(settings)
    out.print("[bold]Starting the local stack[/bold] (Temporal + Web UI, Prometheus, load tester, worker)")
    for component, state in stack.up().items():
        out.print(f"  {component:11} {state}", highlight=False)
    loaded = load_files([DEMO_CANARY])
    canary = next(r for r in loaded.resources if isinstance(r, Canary))
    client = await connect(settings.model_copy(update={"temporal_address": stack.temporal.address}))
    outcomes: list[Outcome] = []
    try:
        for image, expectation in RELEASES:
            out.print(f"\n[bold]Releasing {image}[/bold] — {expectation}")
            request = ReleaseRequest(
                canary=canary,
                revision=image,
                image=image,
                requested_by="canaryflow demo",
                min_interval_seconds=min(settings.min_interval_seconds, DEMO_MIN_INTERVAL_SECONDS),
            )
            started_at = time.monotonic()
            started = await start_release(client, request, task_queue=settings.task_queue)
            link = (
                f"{stack.temporal.ui_url}/namespaces/{settings.temporal_namespace}/workflows/"
                + started.workflow_id.replace("/", "%2F")
            )
            out.print(f"Web UI: {link}", highlight=False)
            code = await follow(client, started.workflow_id, 0, out, out)
            outcomes.append(Outcome(image, expectation, code, time.monotonic() - started_at, started.workflow_id))
    finally:
        if not keep:
            stack.down()
    table = Table("release", "expected", "result", "seconds")
    for outcome in outcomes:
        result = "[green]promoted[/green]" if outcome.exit_code == 0 else "[red]rolled back[/red]"
        table.add_row(outcome.image, outcome.expectation, result, f"{outcome.seconds:.0f}")
    out.print(table)
    if keep:
        out.print("The stack keeps running for a look at the Web UI; stop it with `canaryflow local down`.")
    as_expected = [o.exit_code for o in outcomes] == [0, 1]
    return 0 if as_expected else 1
