"""Names shared by the client, the worker and the workflow: task queue, search attributes, workflow ids."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "canaryflow"
WORKFLOW_TYPE = "CanaryRelease"

SA_NAME = SearchAttributeKey.for_keyword("CanaryName")
SA_NAMESPACE = SearchAttributeKey.for_keyword("CanaryNamespace")
SA_PHASE = SearchAttributeKey.for_keyword("CanaryPhase")
SA_WEIGHT = SearchAttributeKey.for_int("CanaryWeight")
SA_REVISION = SearchAttributeKey.for_keyword("CanaryRevision")
SA_STRATEGY = SearchAttributeKey.for_keyword("CanaryStrategy")

SEARCH_ATTRIBUTES = (SA_NAME, SA_NAMESPACE, SA_PHASE, SA_WEIGHT, SA_REVISION, SA_STRATEGY)


def release_workflow_id(namespace: str, name: str, cluster: str | None = None) -> str:
    """One running release per canary: the server enforces uniqueness of this id."""
    base = f"canary/{namespace}/{name}"
    return f"{cluster}/{base}" if cluster else base


# Exit codes of `canaryflow release --wait` and the other commands (CI scripts rely on them).
EXIT_OK, EXIT_ROLLED_BACK, EXIT_INVALID, EXIT_UNREACHABLE = 0, 1, 2, 3
# Phases a release may end in without a rollback: promoted, or first sight of a canary (nothing to analyse).
SUCCESSFUL_END_PHASES = ("Succeeded", "Initialized")
