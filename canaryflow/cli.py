"""The `canaryflow` command: start releases from CI, steer and inspect them, run the worker and the dev server.

Exit codes: 0 promoted / done, 1 rolled back (or a refused command), 2 invalid input, 3 Temporal unreachable.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table
from temporalio.client import (
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from canaryflow import shared
from canaryflow.loader import LoadResult, load_files
from canaryflow.progress import FollowTimeout, follow, state_table
from canaryflow.settings import Settings, load_settings
from canaryflow.shared import EXIT_INVALID, EXIT_OK, EXIT_ROLLED_BACK, EXIT_UNREACHABLE
from canaryflow.spec import AlertProvider, Canary, MetricTemplate
from canaryflow.temporal_client import TemporalUnavailable, connect

app = typer.Typer(
    name="canaryflow",
    help="Progressive delivery where each release is a durable Temporal workflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")


class CliError(Exception):
    """An error the user can act on: printed as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_ROLLED_BACK) -> None:
        super().__init__(message)
        self.code = code


_debug = False


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine and turn every expected failure into one clear line and an exit code."""
    try:
        return asyncio.run(factory())  # type: ignore[arg-type]
    except CliError as error:
        if _debug:
            raise
        _fail(str(error), error.code)
    except TemporalUnavailable as error:
        if _debug:
            raise
        _fail(str(error), EXIT_UNREACHABLE)
    except OSError as error:  # e.g. a local stack process that cannot start
        if _debug:
            raise
        _fail(str(error), EXIT_UNREACHABLE)
    except RPCError as error:
        if _debug:
            raise
        if error.status == RPCStatusCode.UNAVAILABLE:
            _fail(f"Temporal is unavailable: {error.message}", EXIT_UNREACHABLE)
        if error.status == RPCStatusCode.DEADLINE_EXCEEDED:
            _fail("no worker answered in time: is `canaryflow worker` (or `canaryflow dev`) running?", EXIT_UNREACHABLE)
        _fail(f"Temporal refused the request: {error.message}", EXIT_ROLLED_BACK)


def _identity(explicit: str | None) -> str:
    if explicit:
        return explicit
    for variable in ("CANARYFLOW_IDENTITY", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_REQUESTED_FOR"):
        if os.environ.get(variable):
            return os.environ[variable]
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _load(files: Sequence[Path]) -> LoadResult:
    result = load_files(list(files))
    if result.errors:
        for error in result.errors:
            err.print(str(error), highlight=False, soft_wrap=True, markup=False)
        count = sum(len(error.issues) or 1 for error in result.errors)
        _fail(f"{count} problem(s) in {', '.join(str(f) for f in files)}", EXIT_INVALID)
    return result


# ----------------------------------------------------------------------------------------------------------------
# validate


@app.command()
def validate(
    file: Annotated[list[Path], typer.Option("-f", "--file", help="Canary/MetricTemplate/AlertProvider YAML files.")],
) -> None:
    """Check spec files; exit 2 on any error."""
    result = _load(file)
    for resource in result.resources:
        out.print(f"ok  {resource.kind} {resource.metadata.namespace}/{resource.metadata.name}", highlight=False)
    for skipped in result.skipped:
        out.print(f"skipped  {skipped} (not a Canary, MetricTemplate or AlertProvider)", highlight=False)


# ----------------------------------------------------------------------------------------------------------------
# release


def _revision_of(canary: Canary, image: str | None, revision: str | None) -> str:
    if revision:
        return revision
    if image:
        return image
    canonical = json.dumps(canary.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return "spec-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _build_request(
    result: LoadResult, settings: Settings, image: str | None, revision: str | None, identity: str, reason: str
) -> Any:
    from workflows.model import ReleaseRequest

    canaries = [r for r in result.resources if isinstance(r, Canary)]
    if len(canaries) != 1:
        _fail(f"expected exactly one Canary in the given files, found {len(canaries)}", EXIT_INVALID)
    canary = canaries[0]
    templates = {
        f"{r.metadata.namespace}/{r.metadata.name}": r for r in result.resources if isinstance(r, MetricTemplate)
    }
    providers = {
        f"{r.metadata.namespace}/{r.metadata.name}": r for r in result.resources if isinstance(r, AlertProvider)
    }
    namespace = canary.metadata.namespace
    analysis = canary.spec.analysis
    problems: list[str] = []
    for index, metric in enumerate(analysis.metrics if analysis else []):
        if metric.template_ref is not None:
            key = f"{metric.template_ref.namespace or namespace}/{metric.template_ref.name}"
            if key not in templates:
                problems.append(
                    f"spec.analysis.metrics[{index}].templateRef: MetricTemplate {key} not found. "
                    "Fix: pass its file with another -f"
                )
    for index, alert in enumerate(analysis.alerts if analysis else []):
        key = f"{alert.provider_ref.namespace or namespace}/{alert.provider_ref.name}"
        if key not in providers:
            problems.append(
                f"spec.analysis.alerts[{index}].providerRef: AlertProvider {key} not found. "
                "Fix: pass its file with another -f"
            )
    if problems:
        for problem in problems:
            err.print(problem, highlight=False, soft_wrap=True, markup=False)
        _fail(f"{len(problems)} unresolved reference(s)", EXIT_INVALID)
    return ReleaseRequest(
        canary=canary,
        revision=_revision_of(canary, image, revision),
        image=image,
        metric_templates=templates,
        alert_providers=providers,
        requested_by=identity,
        reason=reason,
        min_interval_seconds=settings.min_interval_seconds,
    )


def _ui_link(settings: Settings, workflow_id: str) -> str:
    from urllib.parse import quote

    base = os.environ.get("CANARYFLOW_UI_URL") or settings.dev_ui_url
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{quote(workflow_id, safe='')}"


@app.command()
def release(
    file: Annotated[list[Path], typer.Option("-f", "--file", help="Canary (+ templates/providers) YAML files.")],
    image: Annotated[str | None, typer.Option(help="New image (version) to release.")] = None,
    revision: Annotated[str | None, typer.Option(help="Revision id; default: the image or a hash of the spec.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the release; exit 0 promoted, 1 rolled back.")] = False,
    identity: Annotated[str | None, typer.Option(help="Who asks (default: CI user or user@host).")] = None,
    reason: Annotated[str, typer.Option(help="Why, recorded in the release history.")] = "",
    timeout: Annotated[float, typer.Option(help="With --wait: give up waiting after this many seconds.")] = 0,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            help="Release on this cluster (also CANARYFLOW_KUBECONFIG): set the Deployment/DaemonSet image there "
            "and use the cluster's revision.",
        ),
    ] = None,
) -> None:
    """Start a release (or deliver a new revision to the running one) through Temporal."""
    settings = _with_kubeconfig(load_settings(), kubeconfig)
    request = _build_request(_load(file), settings, image, revision, _identity(identity), reason)
    on_cluster = _on_cluster(request.canary, settings)

    async def go() -> int:
        from canaryflow.client import start_release

        client = await connect(settings)
        started_request = await _prepare_on_cluster(settings, request, image) if on_cluster else request
        started = await start_release(
            client,
            started_request,
            task_queue=settings.task_queue,
            cluster=settings.cluster_name,
            default_provider=settings.mesh_provider,
        )
        out.print(f"release [bold]{started.workflow_id}[/bold] revision {started_request.revision}", highlight=False)
        out.print(f"Web UI: {_ui_link(settings, started.workflow_id)}", highlight=False)
        if not wait:
            return EXIT_OK
        try:
            code = await follow(client, started.workflow_id, timeout, out, err)
        except FollowTimeout as error:
            raise CliError(str(error)) from error
        return code

    raise typer.Exit(_run(go))


def _with_kubeconfig(settings: Settings, kubeconfig: Path | None) -> Settings:
    """`--kubeconfig` takes the place of CANARYFLOW_KUBECONFIG."""
    if kubeconfig is None:
        return settings
    return settings.model_copy(update={"kubeconfig": kubeconfig.expanduser()})


def _on_cluster(canary: Canary, settings: Settings) -> bool:
    """CI mode on a cluster: a kubeconfig was given and the target is a Deployment or DaemonSet."""
    from canaryflow.kube_release import targets_cluster

    return settings.kubeconfig is not None and targets_cluster(canary)


async def _prepare_on_cluster(settings: Settings, request: Any, image: str | None) -> Any:
    from canaryflow.kube_release import KubeReleaseError, prepare_cluster_release

    try:
        prepared = await asyncio.to_thread(prepare_cluster_release, settings, request, image)
    except KubeReleaseError as error:
        raise CliError(str(error), error.code) from error
    target = request.canary.spec.target_ref
    update = prepared.image_update
    if update is not None:
        when = "" if update.applied_now else " (set by the release once the primary is bootstrapped)"
        out.print(
            f"{target.kind} {request.canary.metadata.namespace}/{target.name} container {update.container}: "
            f"{update.previous_image} -> {update.image}{when}",
            highlight=False,
        )
    return prepared.request


# ----------------------------------------------------------------------------------------------------------------
# status, list, history


async def _handle(settings: Settings, name: str, namespace: str) -> Any:
    from canaryflow.client import release_handle

    client = await connect(settings)
    return release_handle(client, namespace, name, settings.cluster_name)


def _not_found(name: str, namespace: str) -> CliError:
    return CliError(f"no release found for canary {namespace}/{name}", EXIT_ROLLED_BACK)


def _emit(data: Any, output: str) -> None:
    if output == "json":
        out.print_json(json.dumps(data, default=str))
    else:
        out.print(yaml.safe_dump(data, sort_keys=False), highlight=False, markup=False)


NameArg = Annotated[str, typer.Argument(help="Canary name.")]
NamespaceOpt = Annotated[str, typer.Option("-n", "--namespace", help="Canary namespace.")]
OutputOpt = Annotated[str, typer.Option("-o", "--output", help="table, json or yaml.")]


@app.command()
def status(name: NameArg, namespace: NamespaceOpt = "default", output: OutputOpt = "table") -> None:
    """Show where a release is: phase, weights, checks, gates."""
    settings = load_settings()

    async def go() -> Any:
        from workflows.release import CanaryRelease

        handle = await _handle(settings, name, namespace)
        try:
            return await handle.query(CanaryRelease.state)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise _not_found(name, namespace) from error
            raise

    state = _run(go)
    if output == "table":
        out.print(state_table(state))
    else:
        _emit(state.model_dump(mode="json", exclude={"decisions"}), output)


@app.command(name="list")
def list_(
    phase: Annotated[str | None, typer.Option(help="Only releases in this phase.")] = None,
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="Only this namespace.")] = None,
    output: OutputOpt = "table",
) -> None:
    """List releases (running and recent) with their phase and weight."""
    settings = load_settings()
    filters = []
    if phase:
        filters.append(f"{shared.SA_PHASE.name} = '{phase}'")
    if namespace:
        filters.append(f"{shared.SA_NAMESPACE.name} = '{namespace}'")

    async def go() -> list[dict[str, Any]]:
        from canaryflow.client import list_releases

        client = await connect(settings)
        rows = []
        async for execution in list_releases(client, " AND ".join(filters)):
            attrs = execution.typed_search_attributes
            rows.append(
                {
                    "workflow_id": execution.id,
                    "status": execution.status.name if execution.status else "",
                    "namespace": attrs.get(shared.SA_NAMESPACE),
                    "name": attrs.get(shared.SA_NAME),
                    "phase": attrs.get(shared.SA_PHASE),
                    "weight": attrs.get(shared.SA_WEIGHT),
                    "revision": attrs.get(shared.SA_REVISION),
                    "strategy": attrs.get(shared.SA_STRATEGY),
                    "started": execution.start_time.isoformat(timespec="seconds") if execution.start_time else "",
                }
            )
        return rows

    rows = _run(go)
    if output != "table":
        _emit(rows, output)
        return
    table = Table("NAMESPACE", "NAME", "PHASE", "WEIGHT", "REVISION", "STATUS", "STARTED")
    for row in rows:
        table.add_row(
            str(row["namespace"] or ""),
            str(row["name"] or ""),
            str(row["phase"] or ""),
            str(row["weight"] if row["weight"] is not None else ""),
            str(row["revision"] or ""),
            row["status"],
            row["started"],
        )
    out.print(table)


@app.command()
def history(name: NameArg, namespace: NamespaceOpt = "default", output: OutputOpt = "table") -> None:
    """Show the release's decision log (every event, check, gate and command with who and why)."""
    settings = load_settings()

    async def go() -> list[Any]:
        from workflows.release import CanaryRelease

        handle = await _handle(settings, name, namespace)
        try:
            return list(await handle.query(CanaryRelease.decisions))
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise _not_found(name, namespace) from error
            raise

    decisions = _run(go)
    if output != "table":
        _emit([d.model_dump(mode="json") for d in decisions], output)
        return
    table = Table("TIME", "PHASE", "KIND", "MESSAGE", "BY")
    for decision in decisions:
        table.add_row(decision.at.strftime("%H:%M:%S"), decision.phase, decision.kind, decision.message, decision.actor)
    out.print(table)


# ----------------------------------------------------------------------------------------------------------------
# human control


def _command(kind: str, name: str, namespace: str, gate: str, reason: str, identity: str | None) -> None:
    settings = load_settings()
    from workflows.model import Command

    command = Command(identity=_identity(identity), reason=reason, gate=gate)

    async def go() -> Any:
        from canaryflow.client import send_command

        handle = await _handle(settings, name, namespace)
        try:
            return await send_command(handle, kind, command)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            message = getattr(cause, "message", None) or str(cause)
            raise CliError(f"{kind} refused: {message.removeprefix('ValueError: ')}") from error
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            try:  # updates reach running releases only: say so when this one has ended
                description = await handle.describe()
            except RPCError:
                raise _not_found(name, namespace) from error
            phase = description.typed_search_attributes.get(shared.SA_PHASE) or ""
            ended = description.status.name.lower() if description.status else "closed"
            raise CliError(f"{kind} refused: release has ended ({ended}, phase {phase})") from error

    result = _run(go)
    out.print(f"{kind} accepted: {result.message} (phase {result.phase})", highlight=False)


GateOpt = Annotated[str, typer.Option(help="Gate to act on (confirm-rollout, confirm-traffic-increase, ...).")]
ReasonOpt = Annotated[str, typer.Option(help="Why; recorded in the release history.")]
IdentityOpt = Annotated[str | None, typer.Option(help="Who (default: CI user or user@host).")]


@app.command()
def approve(
    name: NameArg,
    namespace: NamespaceOpt = "default",
    gate: GateOpt = "",
    reason: ReasonOpt = "",
    identity: IdentityOpt = None,
) -> None:
    """Open a waiting gate."""
    _command("approve", name, namespace, gate, reason, identity)


@app.command()
def reject(
    name: NameArg,
    namespace: NamespaceOpt = "default",
    gate: GateOpt = "",
    reason: ReasonOpt = "",
    identity: IdentityOpt = None,
) -> None:
    """Refuse a waiting gate: the release rolls back."""
    _command("reject", name, namespace, gate, reason, identity)


def _release_command(kind: str, help_text: str) -> None:
    """Register `canaryflow <kind> NAME`: a command without a gate (abort, pause, resume, promote)."""

    def command(
        name: NameArg, namespace: NamespaceOpt = "default", reason: ReasonOpt = "", identity: IdentityOpt = None
    ) -> None:
        _command(kind, name, namespace, "", reason, identity)

    app.command(name=kind, help=help_text)(command)


_release_command("abort", "Roll the release back now.")
_release_command("pause", "Freeze the analysis (weights stay as they are) until resume.")
_release_command("resume", "Continue a paused release.")
_release_command("promote", "Skip the remaining analysis and promote now.")


# ----------------------------------------------------------------------------------------------------------------
# processes


@app.command()
def worker() -> None:
    """Run a worker on the task queue until SIGTERM/SIGINT."""
    from workers.worker import main as worker_main

    worker_main()


@app.command()
def controller(
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Watch only this namespace (default: all).")
    ] = None,
    watch_flagger_group: Annotated[
        bool,
        typer.Option(
            "--watch-flagger-group", help="Also act on flagger.app/v1beta1 Canaries (migration side by side)."
        ),
    ] = False,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Cluster to watch (default: CANARYFLOW_KUBECONFIG etc.).")
    ] = None,
    resync: Annotated[float, typer.Option(help="Seconds between full re-lists of the watched objects.")] = 30.0,
) -> None:
    """Watch Canary resources on a cluster and start their releases when their target changes."""
    from activities.kube.client import KubeConfigMissing
    from workers.controller import CANARYFLOW_GROUP, FLAGGER_GROUP, ControllerOptions, run_controller

    settings = _with_kubeconfig(load_settings(), kubeconfig)
    groups = (CANARYFLOW_GROUP, FLAGGER_GROUP) if watch_flagger_group else (CANARYFLOW_GROUP,)
    options = ControllerOptions(groups=groups, namespace=namespace, resync_seconds=resync)

    async def go() -> None:
        try:
            await run_controller(settings, options)
        except KubeConfigMissing as error:
            raise CliError(str(error), EXIT_INVALID) from error

    _run(go)


@app.command()
def dev(
    ui: Annotated[bool, typer.Option(help="Serve the Temporal Web UI.")] = True,
) -> None:
    """Start the embedded Temporal dev server (persistent db, our search attributes, Web UI) and a worker."""
    from canaryflow.devserver import DevServer
    from workers.worker import run_worker

    settings = load_settings()
    server = DevServer(settings, ui=ui)
    try:
        server.start()
    except Exception as error:
        if _debug:
            raise
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__, EXIT_UNREACHABLE)
    out.print(f"Temporal dev server at {server.address} (db {settings.dev_db_path})", highlight=False)
    if ui:
        out.print(f"Web UI: {server.ui_url}", highlight=False)
    try:
        _run(lambda: run_worker(settings))
    finally:
        server.stop()


local_app = typer.Typer(
    help="The local platform stack: Temporal + UI, Prometheus, load tester, worker.", no_args_is_help=True
)
app.add_typer(local_app, name="local")


def _stack() -> Any:
    from workers.local_stack import LocalStack

    return LocalStack(load_settings())


def _stack_call(action: Callable[[], T]) -> T:
    from workers.local_stack import StackError

    try:
        return action()
    except (StackError, OSError) as error:
        if _debug:
            raise
        _fail(str(error), EXIT_UNREACHABLE)


@local_app.command("up")
def local_up() -> None:
    """Start the local stack (idempotent)."""
    stack = _stack()
    for component, state in _stack_call(stack.up).items():
        out.print(f"{component:11} {state}", highlight=False)


@local_app.command("down")
def local_down() -> None:
    """Stop everything the local stack and its releases started."""
    stopped = _stack_call(_stack().down)
    out.print("stopped: " + (", ".join(stopped) or "nothing was running"), highlight=False)


@local_app.command("status")
def local_status() -> None:
    """Show the local stack's processes."""
    for component, state in _stack().status().items():
        out.print(f"{component:11} {state}", highlight=False)


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option(help="Leave the stack running afterwards (stop with `canaryflow local down`).")
    ] = True,
) -> None:
    """Run the local demo: a good release (promoted step by step) and a bad one (rolled back)."""
    from canaryflow.demo import run_demo

    code = _run(lambda: run_demo(load_settings(), out, keep=keep))
    raise typer.Exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="canaryflow")


if __name__ == "__main__":
    main()
