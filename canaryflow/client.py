"""Start, steer and inspect releases through the Temporal client (used by the CLI, the controller and tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecution, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from canaryflow import shared
from workflows.decisions import Phase
from workflows.model import Command, CommandResult, Decision, ReleaseRequest, ReleaseResult, ReleaseState
from workflows.release import CanaryRelease

COMMANDS = ("approve", "reject", "abort", "pause", "resume", "promote")


@dataclass(frozen=True)
class StartedRelease:
    handle: WorkflowHandle[CanaryRelease, ReleaseResult]
    workflow_id: str
    run_id: str


def workflow_id_for(request: ReleaseRequest, cluster: str | None = None) -> str:
    meta = request.canary.metadata
    return shared.release_workflow_id(meta.namespace, meta.name, cluster)


def _summary(request: ReleaseRequest) -> str:
    meta = request.canary.metadata
    target = request.canary.spec.target_ref
    version = request.image or request.revision
    return f"{meta.namespace}/{meta.name}: {target.kind}/{target.name} -> {version}"[:200]


def _details(request: ReleaseRequest) -> str:
    analysis = request.canary.spec.analysis
    lines = [
        f"**Canary** `{request.canary.metadata.namespace}/{request.canary.metadata.name}`",
        f"- revision: `{request.revision}`",
        f"- requested by: {request.requested_by or 'unknown'}" + (f" ({request.reason})" if request.reason else ""),
        f"- provider: {request.canary.spec.provider or 'default'}",
    ]
    if analysis is not None:
        lines.append(
            f"- analysis: interval {analysis.interval}, threshold {analysis.threshold}, "
            f"iterations {analysis.iterations}, stepWeight {analysis.step_weight}, "
            f"stepWeights {analysis.step_weights or '-'}, maxWeight {analysis.max_weight or 100}"
        )
    return "\n".join(lines)


def with_default_provider(request: ReleaseRequest, default_provider: str | None) -> ReleaseRequest:
    spec = request.canary.spec
    if not default_provider or spec.provider or spec.target_ref.kind == "LocalApp":
        return request
    canary = request.canary.model_copy(update={"spec": spec.model_copy(update={"provider": default_provider})})
    return request.model_copy(update={"canary": canary})


async def start_release(
    client: Client,
    request: ReleaseRequest,
    *,
    task_queue: str = shared.TASK_QUEUE,
    cluster: str | None = None,
    default_provider: str | None = None,
) -> StartedRelease:
    """Start the release, or deliver the request to the one already running for this canary (signal-with-start).

    A request for a different revision restarts the running analysis at weight 0 on the new revision. Works while
    no worker runs: the server records the start and the signal durably. `default_provider` (Flagger's
    `-mesh-provider`, CANARYFLOW_MESH_PROVIDER) fills an empty `spec.provider` of a Kubernetes canary, so the
    workflow's input says which router serves it.
    """
    request = with_default_provider(request, default_provider)
    meta = request.canary.metadata
    workflow_id = workflow_id_for(request, cluster)
    handle = await client.start_workflow(
        CanaryRelease.run,
        request,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="new_revision",
        start_signal_args=[request],
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(shared.SA_NAME, meta.name),
                SearchAttributePair(shared.SA_NAMESPACE, meta.namespace),
                SearchAttributePair(shared.SA_PHASE, Phase.INITIALIZING.value),
                SearchAttributePair(shared.SA_WEIGHT, 0),
                SearchAttributePair(shared.SA_REVISION, request.revision[:250]),
            ]
        ),
        static_summary=_summary(request),
        static_details=_details(request),
    )
    return StartedRelease(handle=handle, workflow_id=workflow_id, run_id=handle.result_run_id or "")


def release_handle(
    client: Client, namespace: str, name: str, cluster: str | None = None
) -> WorkflowHandle[CanaryRelease, ReleaseResult]:
    return client.get_workflow_handle_for(CanaryRelease.run, shared.release_workflow_id(namespace, name, cluster))


async def send_command(
    handle: WorkflowHandle[CanaryRelease, ReleaseResult], kind: str, command: Command
) -> CommandResult:
    """Run a command as an update: the caller learns at once whether it was accepted, and why not."""
    updates = {
        "approve": CanaryRelease.approve,
        "reject": CanaryRelease.reject,
        "abort": CanaryRelease.abort,
        "pause": CanaryRelease.pause,
        "resume": CanaryRelease.resume,
        "promote": CanaryRelease.promote,
    }
    if kind not in updates:
        raise ValueError(f"unknown command {kind!r}; use one of {', '.join(COMMANDS)}")
    return await handle.execute_update(updates[kind], command)


async def release_state(handle: WorkflowHandle[CanaryRelease, ReleaseResult]) -> ReleaseState:
    return await handle.query(CanaryRelease.state)


async def release_decisions(handle: WorkflowHandle[CanaryRelease, ReleaseResult]) -> list[Decision]:
    return await handle.query(CanaryRelease.decisions)


async def list_releases(client: Client, query: str = "", limit: int = 100) -> AsyncIterator[WorkflowExecution]:
    base = f"WorkflowType = '{shared.WORKFLOW_TYPE}'"
    async for execution in client.list_workflows(f"{base} AND ({query})" if query else base, limit=limit):
        yield execution
