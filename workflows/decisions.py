"""Flagger's release semantics as pure, deterministic functions.

The workflow orchestrates; everything it decides (next weight, verdict of a check, next phase, strategy) is
computed here, from plain values, so it is unit- and property-tested without Temporal. No I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from canaryflow.durations import parse_duration

TOTAL_WEIGHT = 100
DEFAULT_INTERVAL_SECONDS = 60.0
FLAGGER_MIN_INTERVAL_SECONDS = 10.0
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 10.0
BUILTIN_SUCCESS_RATE = "request-success-rate"
BUILTIN_DURATION = "request-duration"
BUILTIN_METRICS = (BUILTIN_SUCCESS_RATE, BUILTIN_DURATION)


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})
ANALYSIS_PHASES = frozenset({Phase.PROGRESSING, Phase.WAITING_PROMOTION})


class Strategy(StrEnum):
    CANARY = "canary"
    BLUE_GREEN = "blue-green"
    AB_TESTING = "ab-testing"


# --------------------------------------------------------------------------------------------------------------
# Durations


def analysis_interval_seconds(text: str | None, floor: float = FLAGGER_MIN_INTERVAL_SECONDS) -> float:
    """Flagger: default 60s, unparsable -> 60s, values below the floor (10s) are raised to it."""
    if not text:
        return DEFAULT_INTERVAL_SECONDS
    try:
        seconds = parse_duration(text)
    except ValueError:
        return DEFAULT_INTERVAL_SECONDS
    return max(seconds, floor)


def webhook_timeout_seconds(text: str | None) -> float:
    """Flagger: strings shorter than 2 characters and unparsable values mean 10s."""
    if not text or len(text) < 2:
        return DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    try:
        seconds = parse_duration(text)
    except ValueError:
        return DEFAULT_WEBHOOK_TIMEOUT_SECONDS
    return seconds if seconds > 0 else DEFAULT_WEBHOOK_TIMEOUT_SECONDS


# --------------------------------------------------------------------------------------------------------------
# Strategy and weights


@dataclass(frozen=True)
class AnalysisPlan:
    """The strategy parameters the decisions need, extracted once from the Canary spec."""

    strategy: Strategy
    iterations: int
    step_weight: int
    step_weights: tuple[int, ...]
    max_weight: int
    step_weight_promotion: int
    mirror: bool
    threshold: int
    provider: str
    warnings: tuple[str, ...] = ()


def make_plan(
    *,
    provider: str,
    iterations: int,
    has_match: bool,
    step_weight: int,
    step_weights: tuple[int, ...] | list[int],
    max_weight: int | None,
    step_weight_promotion: int,
    mirror: bool,
    threshold: int,
) -> AnalysisPlan:
    """Flagger's DeploymentStrategy plus the kubernetes-provider coercion (blue/green only, 10 iterations)."""
    steps = tuple(step_weights)
    warnings: list[str] = []
    if provider == "kubernetes":
        if has_match:
            warnings.append("A/B testing is not supported when using the kubernetes provider")
            has_match = False
        if iterations < 1:
            warnings.append("Progressive traffic is not supported when using the kubernetes provider")
            warnings.append("Setting canaryAnalysis.iterations: 10")
            iterations = 10
    if has_match and iterations > 0:
        strategy = Strategy.AB_TESTING
    elif iterations > 0:
        strategy = Strategy.BLUE_GREEN
    else:
        strategy = Strategy.CANARY
    return AnalysisPlan(
        strategy=strategy,
        iterations=iterations,
        step_weight=step_weight,
        step_weights=steps,
        max_weight=effective_max_weight(max_weight, steps),
        step_weight_promotion=step_weight_promotion,
        mirror=mirror,
        threshold=threshold if threshold > 0 else 1,
        provider=provider,
        warnings=tuple(warnings),
    )


def effective_max_weight(max_weight: int | None, step_weights: tuple[int, ...]) -> int:
    """With stepWeights the last step is the maximum (capped at 100); else maxWeight, default 100."""
    if step_weights:
        return min(TOTAL_WEIGHT, step_weights[-1])
    if max_weight and max_weight > 0:
        return max_weight
    return TOTAL_WEIGHT


def next_step_weight(plan: AnalysisPlan, canary_weight: int) -> int:
    """Flagger's nextStepWeight: the increment to add to the canary weight at the next step."""
    if plan.step_weight > 0 or not plan.step_weights:
        return plan.step_weight
    max_step = TOTAL_WEIGHT - canary_weight
    if max_step == 0:
        return 1  # at 100% any non-zero step moves the canary to promotion
    if canary_weight == 0:
        return min(max_step, plan.step_weights[0])
    for current, following in zip(plan.step_weights, plan.step_weights[1:], strict=False):
        if current == canary_weight:
            return min(max_step, following - canary_weight)
    return max_step


class ActionKind(StrEnum):
    ADVANCE = "advance"  # set routes / count an iteration, analysis continues
    ROUTE_ALL_TO_CANARY = "route-all-to-canary"  # blue/green: after the last iteration, before promotion
    PROMOTE = "promote"  # copy the canary spec to the primary


@dataclass(frozen=True)
class StepAction:
    """What the strategy does after a passing analysis tick."""

    kind: ActionKind
    primary_weight: int
    canary_weight: int
    mirrored: bool
    iterations: int
    # Gates to pass before applying the action (Flagger's confirm-traffic-increase / confirm-promotion hooks).
    confirm_traffic_increase: bool = False
    confirm_promotion: bool = False
    # Flagger's event text; `{canary}` stands for `<name>.<namespace>` where Flagger names the canary.
    message: str = ""
    # Whether the router is written: blue/green iterations leave traffic alone unless mirroring starts.
    writes_routes: bool = True

    def event(self, canary_id: str) -> str:
        return self.message.format(canary=canary_id)


def next_action(plan: AnalysisPlan, canary_weight: int, iterations: int, mirrored: bool) -> StepAction:
    """Flagger's runCanary / runAB / runBlueGreen after a passing tick, from the current routes and iteration."""
    primary_weight = TOTAL_WEIGHT - canary_weight
    if plan.strategy == Strategy.AB_TESTING:
        if plan.iterations > iterations:
            return StepAction(
                ActionKind.ADVANCE,
                0,
                TOTAL_WEIGHT,
                False,
                iterations + 1,
                message=f"Advance {{canary}} canary iteration {iterations + 1}/{plan.iterations}",
            )
        return StepAction(
            ActionKind.PROMOTE,
            primary_weight,
            canary_weight,
            mirrored,
            iterations,
            confirm_promotion=True,
            message="Copying {canary} template spec to primary",
        )
    if plan.strategy == Strategy.BLUE_GREEN:
        if plan.iterations > iterations:
            start_mirror = plan.provider != "kubernetes" and plan.mirror and not mirrored
            return StepAction(
                ActionKind.ADVANCE,
                TOTAL_WEIGHT if start_mirror else primary_weight,
                0 if start_mirror else canary_weight,
                True if start_mirror else mirrored,
                iterations + 1,
                message=f"Advance {{canary}} canary iteration {iterations + 1}/{plan.iterations}",
                writes_routes=start_mirror,
            )
        if plan.iterations == iterations:
            if plan.provider == "kubernetes":
                return StepAction(
                    ActionKind.ROUTE_ALL_TO_CANARY,
                    primary_weight,
                    canary_weight,
                    mirrored,
                    iterations + 1,
                    confirm_promotion=True,
                    message="Blue/green analysis completed ({canary})",
                    writes_routes=False,
                )
            message = (
                "Stop traffic mirroring and route all traffic to canary"
                if plan.mirror
                else "Routing all traffic to canary"
            )
            return StepAction(
                ActionKind.ROUTE_ALL_TO_CANARY,
                0,
                TOTAL_WEIGHT,
                False,
                iterations + 1,
                confirm_promotion=True,
                message=message,
            )
        # Flagger runs the confirm-promotion hooks before this branch too, so the gate is checked again here.
        return StepAction(
            ActionKind.PROMOTE,
            primary_weight,
            canary_weight,
            mirrored,
            iterations,
            confirm_promotion=True,
            message="Copying {canary} template spec to primary",
        )
    # canary: progressive weights
    if canary_weight < plan.max_weight:
        step = next_step_weight(plan, canary_weight)
        if plan.mirror and canary_weight == 0:
            if not mirrored:
                return StepAction(
                    ActionKind.ADVANCE,
                    TOTAL_WEIGHT,
                    0,
                    True,
                    iterations,
                    confirm_traffic_increase=True,
                    message="Start traffic mirroring",
                )
            new_canary = step
            return StepAction(
                ActionKind.ADVANCE,
                TOTAL_WEIGHT - new_canary,
                new_canary,
                False,
                iterations,
                # Flagger skips the confirm-traffic-increase hook while the current routes are mirrored.
                message=f"Advance {{canary}} canary weight {new_canary}",
            )
        new_canary = min(TOTAL_WEIGHT, canary_weight + step)
        new_primary = max(0, primary_weight - step)
        return StepAction(
            ActionKind.ADVANCE,
            new_primary,
            new_canary,
            mirrored,
            iterations,
            confirm_traffic_increase=not mirrored,
            message=f"Advance {{canary}} canary weight {new_canary}",
        )
    return StepAction(
        ActionKind.PROMOTE,
        primary_weight,
        canary_weight,
        mirrored,
        iterations,
        confirm_promotion=True,
        message="Copying {canary} template spec to primary",
    )


def promotion_traffic_shift(plan: AnalysisPlan, primary_weight: int, canary_weight: int) -> tuple[int, int]:
    """Flagger's runPromotionTrafficShift: all at once, or stepWeightPromotion per interval."""
    if plan.step_weight_promotion <= 0 or canary_weight <= 0:
        return TOTAL_WEIGHT, 0
    primary = min(TOTAL_WEIGHT, primary_weight + plan.step_weight_promotion)
    canary = max(0, canary_weight - plan.step_weight_promotion)
    return primary, canary


def is_first_analysis_tick(canary_weight: int, iterations: int, mirror: bool, mirrored: bool) -> bool:
    """Pre-rollout hooks run instead of the analysis while no traffic has reached the canary yet."""
    return canary_weight == 0 and iterations == 0 and not (mirror and mirrored)


def threshold_reached(failed_checks: int, threshold: int) -> bool:
    """Cumulative failed checks (never reset by a success) against the threshold."""
    return failed_checks >= max(threshold, 1)


# --------------------------------------------------------------------------------------------------------------
# Metric verdicts


@dataclass(frozen=True)
class MetricVerdict:
    passed: bool
    message: str


def metric_bounds(
    name: str, minimum: float | None, maximum: float | None, deprecated_threshold: float | None
) -> tuple[float | None, float | None]:
    """thresholdRange, or Flagger's deprecated `threshold`: a minimum for success rate, a maximum otherwise."""
    if minimum is None and maximum is None and deprecated_threshold is not None:
        if name == BUILTIN_SUCCESS_RATE:
            return deprecated_threshold, None
        return None, deprecated_threshold
    return minimum, maximum


def _format(name: str, value: float) -> str:
    if name == BUILTIN_SUCCESS_RATE:
        return f"{value:.2f}%"
    if name == BUILTIN_DURATION:
        return f"{value:g}ms"
    return f"{value:g}"


def metric_verdict(
    name: str, value: float | None, minimum: float | None, maximum: float | None, target: str = ""
) -> MetricVerdict:
    """Both bounds are inclusive passes; "no values" (None or NaN) is a failed check, as in Flagger."""
    if value is None or value != value:
        suffix = f" probably {target} is not receiving traffic" if target else ""
        return MetricVerdict(False, f"Halt advancement no values found for metric {name}{suffix}")
    label = {BUILTIN_SUCCESS_RATE: "success rate", BUILTIN_DURATION: "request duration"}.get(name, name)
    if minimum is not None and value < minimum:
        return MetricVerdict(False, f"Halt advancement {label} {_format(name, value)} < {_format(name, minimum)}")
    if maximum is not None and value > maximum:
        return MetricVerdict(False, f"Halt advancement {label} {_format(name, value)} > {_format(name, maximum)}")
    return MetricVerdict(True, f"{label} {_format(name, value)} within range")


# --------------------------------------------------------------------------------------------------------------
# Webhooks, alerts, identity


def webhook_succeeded(status_code: int | None) -> bool:
    """Flagger's rule: a webhook passes when it answers with a status code of at most 202 (so 204 fails)."""
    return status_code is not None and 200 <= status_code <= 202


def revision_checksum(revision: str, tracked_configs: dict[str, str] | None = None) -> str:
    """Stable id of a revision and its configs, sent as `checksum` in webhook payloads."""
    # JSON keeps the encoding unambiguous: a `|` or `=` inside a value cannot imitate another config entry.
    material = json.dumps([revision, sorted((tracked_configs or {}).items())], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def event_type(warning: bool) -> str:
    """Flagger's (and Kubernetes') event type: warn/error events are Warnings, the rest Normal."""
    return "Warning" if warning else "Normal"


def webhook_payload(name: str, namespace: str, phase: str, revision: str, metadata: dict[str, str]) -> dict[str, Any]:
    """Flagger's CanaryWebhookPayload."""
    checksum = revision_checksum(revision)
    return {"name": name, "namespace": namespace, "phase": phase, "checksum": checksum, "metadata": metadata}


def event_metadata(message: str, warning: bool, at: datetime) -> dict[str, str]:
    """What Flagger adds to an event webhook's metadata (timestamp in Unix milliseconds)."""
    return {"eventMessage": message, "eventType": event_type(warning), "timestamp": str(int(at.timestamp() * 1000))}


def traffic_routing_description(plan: AnalysisPlan) -> str:
    if plan.strategy == Strategy.AB_TESTING:
        return "A/B Testing"
    if plan.strategy == Strategy.BLUE_GREEN:
        return "Blue/Green"
    if plan.step_weights:
        steps = ",".join(str(w) for w in plan.step_weights)
        return f"Weight steps: {steps} max: {plan.max_weight}"
    return f"Weight step: {plan.step_weight} max: {plan.max_weight}"


SEVERITY_RANK = {"info": 0, "warn": 1, "error": 2}


def alert_wanted(alert_severity: str, event_severity: str) -> bool:
    """Whether an alert configured with `alert_severity` fires for an event of `event_severity`.

    `info` means every event, `warn` warn and error events, `error` error events only. An empty alert severity
    means `info`, as Flagger documents; Flagger's code never fires such an alert, a quirk fixed on purpose.
    An unknown severity on either side never fires.
    """
    wanted_rank = SEVERITY_RANK.get(alert_severity or "info")
    event_rank = SEVERITY_RANK.get(event_severity)
    if wanted_rank is None or event_rank is None:
        return False
    return event_rank >= wanted_rank


def promoted_condition(phase: Phase, kind: str = "Deployment") -> tuple[str, str]:
    """Flagger's `Promoted` condition (status, message) for a phase."""
    table: dict[Phase, tuple[str, str]] = {
        Phase.INITIALIZING: ("Unknown", f"New {kind} detected, starting initialization."),
        Phase.INITIALIZED: ("True", f"{kind} initialization completed."),
        Phase.WAITING: ("Unknown", "Waiting for approval."),
        Phase.WAITING_PROMOTION: ("Unknown", "Waiting for approval."),
        Phase.PROGRESSING: ("Unknown", "New revision detected, progressing canary analysis."),
        Phase.PROMOTING: ("Unknown", "Canary analysis completed, starting primary rolling update."),
        Phase.FINALISING: ("Unknown", "Canary analysis completed, routing all traffic to primary."),
        Phase.SUCCEEDED: ("True", "Canary analysis completed successfully, promotion finished."),
        Phase.FAILED: ("False", f"Canary analysis failed, {kind} scaled to zero."),
    }
    return table[phase]
