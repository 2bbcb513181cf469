"""Whole releases of the pure decisions, simulated tick by tick the way Flagger's scheduler runs them.

Expected sequences come from Flagger's own scheduler tests (pkg/controller/scheduler_svc_test.go,
scheduler_deployment_test.go) and from reading runCanary / runAB / runBlueGreen / runPromotionTrafficShift.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.decisions import (
    TOTAL_WEIGHT,
    ActionKind,
    AnalysisPlan,
    StepAction,
    Strategy,
    is_first_analysis_tick,
    make_plan,
    next_action,
    promotion_traffic_shift,
    threshold_reached,
)

pytestmark = pytest.mark.unit

PRE_ROLLOUT = "pre-rollout"
ANALYSIS = "analysis"
# Flagger needs at most 100 one-percent steps plus the promotion; anything longer is a runaway release.
MAX_TICKS = 250


def plan_for(
    *,
    provider: str = "istio",
    iterations: int = 0,
    has_match: bool = False,
    step_weight: int = 0,
    step_weights: tuple[int, ...] = (),
    max_weight: int | None = None,
    step_weight_promotion: int = 0,
    mirror: bool = False,
    threshold: int = 1,
) -> AnalysisPlan:
    return make_plan(
        provider=provider,
        iterations=iterations,
        has_match=has_match,
        step_weight=step_weight,
        step_weights=step_weights,
        max_weight=max_weight,
        step_weight_promotion=step_weight_promotion,
        mirror=mirror,
        threshold=threshold,
    )


@dataclass
class Release:
    """What a simulated release did: the check of each tick and every action applied after a passing one."""

    checks: list[str] = field(default_factory=list)
    actions: list[StepAction] = field(default_factory=list)
    failed_checks: int = 0
    rolled_back_at_tick: int | None = None

    @property
    def promoted(self) -> bool:
        return bool(self.actions) and self.actions[-1].kind == ActionKind.PROMOTE

    @property
    def route_changes(self) -> list[StepAction]:
        return [action for action in self.actions if action.kind != ActionKind.PROMOTE]

    @property
    def routes(self) -> list[tuple[int, int, bool]]:
        return [(a.primary_weight, a.canary_weight, a.mirrored) for a in self.route_changes]

    @property
    def canary_weights(self) -> list[int]:
        return [action.canary_weight for action in self.route_changes]


def simulate(plan: AnalysisPlan, check_outcomes: Iterable[bool] = ()) -> Release:
    """Flagger's tick order from weight 0 / iteration 0 / not mirrored, with every gate open.

    Each tick: roll back if the failed checks reached the threshold; run the pre-rollout hooks while no
    traffic reached the canary yet, the analysis afterwards; a failed check only counts, a passing one
    applies the next strategy action. `check_outcomes` scripts the checks in order; once exhausted, every
    check passes.
    """
    outcomes: Iterator[bool] = itertools.chain(check_outcomes, itertools.repeat(True))
    release = Release()
    canary_weight, iterations, mirrored = 0, 0, False
    for tick in range(1, MAX_TICKS + 1):
        if threshold_reached(release.failed_checks, plan.threshold):
            release.rolled_back_at_tick = tick
            return release
        first = is_first_analysis_tick(canary_weight, iterations, plan.mirror, mirrored)
        release.checks.append(PRE_ROLLOUT if first else ANALYSIS)
        if not next(outcomes):
            release.failed_checks += 1
            continue
        action = next_action(plan, canary_weight, iterations, mirrored)
        release.actions.append(action)
        if action.kind == ActionKind.PROMOTE:
            return release
        canary_weight, iterations, mirrored = action.canary_weight, action.iterations, action.mirrored
    raise AssertionError(f"release neither promoted nor rolled back within {MAX_TICKS} ticks: {release}")


def shift_back_to_primary(plan: AnalysisPlan, primary_weight: int, canary_weight: int) -> list[tuple[int, int]]:
    """Flagger's Promoting phase: one traffic shift per tick until the primary has all traffic."""
    shifts: list[tuple[int, int]] = []
    while primary_weight != TOTAL_WEIGHT:
        primary_weight, canary_weight = promotion_traffic_shift(plan, primary_weight, canary_weight)
        shifts.append((primary_weight, canary_weight))
        assert len(shifts) <= TOTAL_WEIGHT, f"promotion traffic shift does not converge: {shifts}"
    return shifts


# --------------------------------------------------------------------------------------------------
# Canary (progressive weights)


def test_step_weight_overshoots_max_weight_by_one_step_like_flagger() -> None:
    # Flagger's TestScheduler_ServicePromotion: stepWeight 20, maxWeight 50 -> primary 80, 60, 40, promote.
    release = simulate(plan_for(step_weight=20, max_weight=50))

    assert release.routes == [(80, 20, False), (60, 40, False), (40, 60, False)]
    assert release.promoted
    assert (release.actions[-1].primary_weight, release.actions[-1].canary_weight) == (40, 60)


def test_step_weight_without_max_weight_goes_to_full_traffic() -> None:
    release = simulate(plan_for(step_weight=10))

    assert release.canary_weights == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert release.routes[-1] == (0, 100, False)
    assert release.promoted


def test_step_weights_are_visited_in_order() -> None:
    # Flagger's TestScheduler_ServicePromotionWithWeightsHappyCase: primary 99, 98, 90, 20.
    release = simulate(plan_for(step_weights=(1, 2, 10, 80)))

    assert release.canary_weights == [1, 2, 10, 80]
    assert release.promoted


@pytest.mark.parametrize(
    ("step_weights", "expected_canary_weights"),
    [
        # Flagger's TestScheduler_ServicePromotionWithWeightsOverflow: primary 99, 98, 90, 0.
        ((1, 2, 10, 200), [1, 2, 10, 100]),
        ((10, 50, 120), [10, 50, 100]),
    ],
)
def test_step_weights_above_total_are_capped_at_full_traffic(
    step_weights: tuple[int, ...], expected_canary_weights: list[int]
) -> None:
    release = simulate(plan_for(step_weights=step_weights))

    assert release.canary_weights == expected_canary_weights
    assert release.promoted


def test_mirroring_starts_with_a_mirror_only_step_then_shifts_weights() -> None:
    release = simulate(plan_for(step_weight=20, max_weight=40, mirror=True))

    assert release.routes == [(100, 0, True), (80, 20, False), (60, 40, False)]
    assert release.promoted


def test_mirroring_with_step_weights_uses_the_first_step_after_the_mirror() -> None:
    release = simulate(plan_for(step_weights=(5, 50), mirror=True))

    assert release.routes == [(100, 0, True), (95, 5, False), (50, 50, False)]
    assert release.promoted


def test_traffic_increase_gate_is_asked_before_every_increase_except_when_leaving_the_mirror() -> None:
    release = simulate(plan_for(step_weight=20, max_weight=40, mirror=True))

    gates = [(a.kind, a.confirm_traffic_increase, a.confirm_promotion) for a in release.actions]
    assert gates == [
        (ActionKind.ADVANCE, True, False),  # start mirroring
        (ActionKind.ADVANCE, False, False),  # Flagger skips the hook while the routes are mirrored
        (ActionKind.ADVANCE, True, False),
        (ActionKind.PROMOTE, False, True),
    ]


def test_pre_rollout_hooks_run_until_traffic_reaches_the_canary() -> None:
    canary = simulate(plan_for(step_weight=50))
    mirrored = simulate(plan_for(step_weight=50, mirror=True))

    assert canary.checks == [PRE_ROLLOUT, ANALYSIS, ANALYSIS]
    # While mirrored the canary receives copies of the traffic, so the analysis runs from the second tick.
    assert mirrored.checks == [PRE_ROLLOUT, ANALYSIS, ANALYSIS, ANALYSIS]


# --------------------------------------------------------------------------------------------------
# A/B testing and blue/green


def test_ab_testing_routes_matching_traffic_to_canary_for_each_iteration() -> None:
    release = simulate(plan_for(iterations=3, has_match=True))

    assert [(a.kind, a.primary_weight, a.canary_weight, a.iterations) for a in release.actions] == [
        (ActionKind.ADVANCE, 0, 100, 1),
        (ActionKind.ADVANCE, 0, 100, 2),
        (ActionKind.ADVANCE, 0, 100, 3),
        (ActionKind.PROMOTE, 0, 100, 3),
    ]
    assert release.actions[-1].confirm_promotion
    assert release.checks == [PRE_ROLLOUT, ANALYSIS, ANALYSIS, ANALYSIS]


def test_blue_green_counts_iterations_then_routes_all_traffic_to_canary_before_promotion() -> None:
    release = simulate(plan_for(iterations=3))

    assert [(a.kind, a.primary_weight, a.canary_weight, a.mirrored, a.iterations) for a in release.actions] == [
        (ActionKind.ADVANCE, 100, 0, False, 1),
        (ActionKind.ADVANCE, 100, 0, False, 2),
        (ActionKind.ADVANCE, 100, 0, False, 3),
        (ActionKind.ROUTE_ALL_TO_CANARY, 0, 100, False, 4),
        (ActionKind.PROMOTE, 0, 100, False, 4),
    ]
    # Flagger's runBlueGreen asks the confirm-promotion hooks before switching traffic and before promoting.
    assert [a.confirm_promotion for a in release.actions] == [False, False, False, True, True]
    assert release.actions[3].message == "Routing all traffic to canary"


def test_blue_green_with_mirroring_mirrors_during_all_iterations() -> None:
    release = simulate(plan_for(iterations=3, mirror=True))

    assert [(a.kind, a.primary_weight, a.canary_weight, a.mirrored, a.iterations) for a in release.actions] == [
        (ActionKind.ADVANCE, 100, 0, True, 1),
        (ActionKind.ADVANCE, 100, 0, True, 2),
        (ActionKind.ADVANCE, 100, 0, True, 3),
        (ActionKind.ROUTE_ALL_TO_CANARY, 0, 100, False, 4),
        (ActionKind.PROMOTE, 0, 100, False, 4),
    ]
    assert release.actions[3].message == "Stop traffic mirroring and route all traffic to canary"


def test_kubernetes_provider_forces_blue_green_with_ten_iterations_and_no_traffic_change() -> None:
    plan = plan_for(provider="kubernetes", step_weight=20, has_match=True, mirror=True)

    assert plan.strategy == Strategy.BLUE_GREEN
    assert plan.iterations == 10
    assert plan.warnings == (
        "A/B testing is not supported when using the kubernetes provider",
        "Progressive traffic is not supported when using the kubernetes provider",
        "Setting canaryAnalysis.iterations: 10",
    )
    release = simulate(plan)
    assert [a.kind for a in release.actions] == [ActionKind.ADVANCE] * 10 + [
        ActionKind.ROUTE_ALL_TO_CANARY,
        ActionKind.PROMOTE,
    ]
    assert {(a.primary_weight, a.canary_weight, a.mirrored) for a in release.actions} == {(100, 0, False)}
    assert [a.iterations for a in release.actions] == [*range(1, 12), 11]


def test_kubernetes_provider_keeps_configured_iterations_and_drops_the_match() -> None:
    plan = plan_for(provider="kubernetes", iterations=4, has_match=True)

    assert (plan.strategy, plan.iterations) == (Strategy.BLUE_GREEN, 4)
    assert plan.warnings == ("A/B testing is not supported when using the kubernetes provider",)
    assert len(simulate(plan).actions) == 4 + 2


# --------------------------------------------------------------------------------------------------
# Promotion traffic shift (Promoting phase)


@pytest.mark.parametrize(
    ("step_weight_promotion", "start", "expected"),
    [
        (30, (0, 100), [(30, 70), (60, 40), (90, 10), (100, 0)]),
        # Flagger's TestScheduler_DeploymentAnalysisPhases: stepWeight 100, stepWeightPromotion 50.
        (50, (0, 100), [(50, 50), (100, 0)]),
        (25, (40, 60), [(65, 35), (90, 10), (100, 0)]),
        (0, (0, 100), [(100, 0)]),
        (0, (40, 60), [(100, 0)]),
    ],
)
def test_promotion_shifts_traffic_back_to_primary(
    step_weight_promotion: int, start: tuple[int, int], expected: list[tuple[int, int]]
) -> None:
    plan = plan_for(step_weight=20, step_weight_promotion=step_weight_promotion)

    assert shift_back_to_primary(plan, *start) == expected


# --------------------------------------------------------------------------------------------------
# Failed-check accounting


def test_threshold_one_rolls_back_on_the_tick_after_the_first_failure() -> None:
    release = simulate(plan_for(step_weight=20, threshold=1), [True, False])

    assert release.failed_checks == 1
    assert release.rolled_back_at_tick == 3
    assert release.canary_weights == [20]


def test_failing_pre_rollout_hook_counts_and_is_retried() -> None:
    release = simulate(plan_for(step_weight=50, threshold=2), [False, True])

    assert release.checks == [PRE_ROLLOUT, PRE_ROLLOUT, ANALYSIS, ANALYSIS]
    assert release.failed_checks == 1
    assert release.promoted


def test_failed_checks_are_cumulative_not_consecutive() -> None:
    outcomes = [True, False, True, False, True, False]
    release = simulate(plan_for(step_weight=10, threshold=3), outcomes)

    assert release.failed_checks == 3
    assert release.rolled_back_at_tick == len(outcomes) + 1
    # The passing ticks in between kept advancing and did not reset the count.
    assert release.canary_weights == [10, 20, 30]


def test_failures_below_the_threshold_do_not_stop_the_release() -> None:
    release = simulate(plan_for(step_weight=50, threshold=3), [False, True, False])

    assert release.failed_checks == 2
    assert release.rolled_back_at_tick is None
    assert release.promoted


def test_threshold_zero_means_one() -> None:
    release = simulate(plan_for(iterations=5, threshold=0), [True, True, False])

    assert release.rolled_back_at_tick == 4
    assert release.failed_checks == 1


# --------------------------------------------------------------------------------------------------
# Properties

step_percent = st.integers(min_value=1, max_value=100)
increasing_step_weights = st.lists(step_percent, min_size=1, max_size=12, unique=True).map(
    lambda weights: tuple(sorted(weights))
)


def assert_routes_are_valid(release: Release) -> None:
    for action in release.actions:
        assert 0 <= action.primary_weight <= TOTAL_WEIGHT
        assert 0 <= action.canary_weight <= TOTAL_WEIGHT
        assert action.primary_weight + action.canary_weight == TOTAL_WEIGHT


@given(step_weight=step_percent, max_weight=st.none() | step_percent, mirror=st.booleans())
def test_step_weight_releases_climb_to_max_weight_then_promote(
    step_weight: int, max_weight: int | None, mirror: bool
) -> None:
    plan = plan_for(step_weight=step_weight, max_weight=max_weight, mirror=mirror)
    release = simulate(plan)

    assert release.promoted
    assert len(release.actions) <= TOTAL_WEIGHT + 2
    assert_routes_are_valid(release)
    weights = release.canary_weights
    if mirror:
        assert release.routes[0] == (100, 0, True)
        weights = weights[1:]
    assert not any(action.mirrored for action in release.route_changes[1 if mirror else 0 :])
    assert all(before < after for before, after in itertools.pairwise([0, *weights]))
    target = plan.max_weight
    expected_steps = math.ceil(target / step_weight)
    assert weights == [min(TOTAL_WEIGHT, step_weight * k) for k in range(1, expected_steps + 1)]
    assert weights[-1] >= target
    assert all(weight < target for weight in weights[:-1])
    assert weights[-1] - target < step_weight


@given(step_weights=increasing_step_weights, mirror=st.booleans())
def test_step_weights_releases_visit_each_step_then_promote(step_weights: tuple[int, ...], mirror: bool) -> None:
    release = simulate(plan_for(step_weights=step_weights, mirror=mirror))

    assert release.promoted
    assert len(release.actions) <= TOTAL_WEIGHT + 2
    assert_routes_are_valid(release)
    weights = release.canary_weights[1:] if mirror else release.canary_weights
    assert tuple(weights) == step_weights
    assert all(before < after for before, after in itertools.pairwise([0, *weights]))


@given(iterations=st.integers(min_value=1, max_value=60))
def test_ab_testing_promotes_after_exactly_n_passing_steps(iterations: int) -> None:
    release = simulate(plan_for(iterations=iterations, has_match=True))

    assert [a.kind for a in release.actions] == [ActionKind.ADVANCE] * iterations + [ActionKind.PROMOTE]
    assert [a.iterations for a in release.route_changes] == list(range(1, iterations + 1))
    assert_routes_are_valid(release)


@given(
    iterations=st.integers(min_value=1, max_value=60),
    mirror=st.booleans(),
    provider=st.sampled_from(["istio", "kubernetes"]),
)
def test_blue_green_promotes_after_exactly_n_plus_one_passing_steps(
    iterations: int, mirror: bool, provider: str
) -> None:
    release = simulate(plan_for(iterations=iterations, mirror=mirror, provider=provider))

    assert [a.kind for a in release.actions] == [ActionKind.ADVANCE] * iterations + [
        ActionKind.ROUTE_ALL_TO_CANARY,
        ActionKind.PROMOTE,
    ]
    assert [a.iterations for a in release.route_changes] == list(range(1, iterations + 2))
    assert_routes_are_valid(release)


@given(
    failed_checks=st.integers(min_value=0, max_value=50),
    more_failures=st.integers(min_value=0, max_value=50),
    threshold=st.integers(min_value=-5, max_value=50),
    higher_threshold_by=st.integers(min_value=0, max_value=50),
)
def test_threshold_reached_is_monotonic(
    failed_checks: int, more_failures: int, threshold: int, higher_threshold_by: int
) -> None:
    if threshold_reached(failed_checks, threshold):
        assert threshold_reached(failed_checks + more_failures, threshold)
    if threshold_reached(failed_checks, threshold + higher_threshold_by):
        assert threshold_reached(failed_checks, threshold)
    assert threshold_reached(failed_checks, threshold) == (failed_checks >= max(threshold, 1))


@given(canary_weight=st.integers(min_value=0, max_value=100), step_weight_promotion=st.integers(0, 100))
def test_promotion_traffic_shift_ends_with_all_traffic_on_primary(
    canary_weight: int, step_weight_promotion: int
) -> None:
    plan = plan_for(step_weight=10, step_weight_promotion=step_weight_promotion)
    shifts = shift_back_to_primary(plan, TOTAL_WEIGHT - canary_weight, canary_weight)

    canary_weights = [canary_weight] + [canary for _, canary in shifts]
    assert all(after <= before for before, after in itertools.pairwise(canary_weights))
    assert all(primary + canary == TOTAL_WEIGHT for primary, canary in shifts)
    if canary_weight > 0:
        assert shifts[-1] == (100, 0)
        expected_shifts = math.ceil(canary_weight / step_weight_promotion) if step_weight_promotion else 1
        assert len(shifts) == expected_shifts
    else:
        assert shifts == []
