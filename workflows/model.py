"""The release workflow's input, state, commands and result (all pydantic, carried through Temporal)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.spec import AlertProvider, Canary, MetricTemplate

# History bound: a release continues-as-new at an analysis tick boundary once its history has this many events
# (or the server suggests it). One analysis tick is about 20 events, so 2,000 events is about 100 ticks.
DEFAULT_HISTORY_EVENT_LIMIT = 2000
DECISION_LOG_LIMIT = 300


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReleaseRequest(_Model):
    """What a start (CI, controller) delivers: the validated spec with its references resolved, never a secret."""

    canary: Canary
    revision: str
    image: str | None = None
    metric_templates: dict[str, MetricTemplate] = Field(default_factory=dict)  # key "<namespace>/<name>"
    alert_providers: dict[str, AlertProvider] = Field(default_factory=dict)  # key "<namespace>/<name>"
    requested_by: str = ""
    reason: str = ""
    min_interval_seconds: float = 10.0
    history_event_limit: int = DEFAULT_HISTORY_EVENT_LIMIT
    carried_state: ReleaseState | None = None  # set by continue-as-new only


class Stage(StrEnum):
    """Where the workflow body is, so a continued-as-new run resumes at the same place."""

    INITIALIZE = "initialize"
    CONFIRM_ROLLOUT = "confirm-rollout"
    ANALYSIS = "analysis"
    PROMOTION = "promotion"
    DONE = "done"


class Decision(_Model):
    at: datetime
    phase: str
    kind: str  # event | warning | command | metric | webhook | gate
    message: str
    actor: str = ""


class ReleaseState(_Model):
    name: str
    namespace: str
    revision: str
    strategy: str
    phase: str = "Initializing"
    stage: Stage = Stage.INITIALIZE
    primary_weight: int = 100
    canary_weight: int = 0
    mirrored: bool = False
    iterations: int = 0
    failed_checks: int = 0
    threshold: int = 1
    interval_seconds: float = 60.0
    paused: bool = False
    paused_by: str = ""
    waiting_gates: list[str] = Field(default_factory=list)
    last_metrics: dict[str, float | None] = Field(default_factory=dict)
    started_at: datetime | None = None
    last_transition_time: datetime | None = None
    next_tick_at: datetime | None = None
    last_route_change_at: datetime | None = None  # metric windows never reach back past it
    canary_running: bool = False
    ticks: int = 0
    runs: int = 1  # continue-as-new generations
    session_cookie: str = ""
    previous_session_cookie: str = ""
    outcome: str = ""
    decisions: list[Decision] = Field(default_factory=list)
    dropped_decisions: int = 0
    reported_decisions: int = 0  # decision-log index up to which status reports carried the entries
    status_sequence: int = 0  # number of status reports sent, across continue-as-new


ReleaseRequest.model_rebuild()


class Command(_Model):
    """A human command (signal or update). `gate` names the gate for approve/reject."""

    identity: str = ""
    reason: str = ""
    gate: str = ""


class CommandResult(_Model):
    accepted: bool
    message: str
    phase: str


class ReleaseResult(_Model):
    name: str
    namespace: str
    revision: str
    phase: str
    message: str
    canary_weight: int
    failed_checks: int
    iterations: int
