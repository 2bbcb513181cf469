"""Single decisions: durations, strategy plan, weights, metric verdicts, webhook results, checksums."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from workflows.decisions import (
    BUILTIN_DURATION,
    BUILTIN_SUCCESS_RATE,
    AnalysisPlan,
    Phase,
    Strategy,
    analysis_interval_seconds,
    effective_max_weight,
    is_first_analysis_tick,
    make_plan,
    metric_bounds,
    metric_verdict,
    next_step_weight,
    parse_duration,
    promoted_condition,
    revision_checksum,
    traffic_routing_description,
    webhook_succeeded,
    webhook_timeout_seconds,
)

pytestmark = pytest.mark.unit


def plan_for(
    *,
    provider: str = "istio",
    iterations: int = 0,
    has_match: bool = False,
    step_weight: int = 0,
    step_weights: tuple[int, ...] = (),
    max_weight: int | None = None,
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
        step_weight_promotion=0,
        mirror=mirror,
        threshold=threshold,
    )


# --------------------------------------------------------------------------------------------------
# Durations (Go's time.ParseDuration, Flagger's defaults)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1h1m1s", 3661.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("+10s", 10.0),
        ("250us", 250e-6),
        ("250\u00b5s", 250e-6),
        ("250\u03bcs", 250e-6),
        ("1000000ns", 1e-3),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "10", "1m30", "s", ".s", "1x", "1 s", " 10s", "10s ", "1.5.s", "ten seconds", "1d", "+", "-1s"],
)
def test_parse_duration_rejects_what_go_rejects_and_negative_values(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (None, 60.0),
        ("", 60.0),
        ("soon", 60.0),
        ("30", 60.0),
        ("1m", 60.0),
        ("90s", 90.0),
        ("2m30s", 150.0),
        ("10s", 10.0),
        ("5s", 10.0),
        ("500ms", 10.0),
        ("0s", 10.0),
    ],
)
def test_analysis_interval_defaults_to_60s_and_is_at_least_10s(text: str | None, seconds: float) -> None:
    assert analysis_interval_seconds(text) == seconds


def test_analysis_interval_floor_can_be_lowered() -> None:
    assert analysis_interval_seconds("5s", floor=1.0) == 5.0
    assert analysis_interval_seconds("500ms", floor=0.0) == 0.5
    assert analysis_interval_seconds("500ms", floor=1.0) == 1.0
    assert analysis_interval_seconds(None, floor=1.0) == 60.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (None, 10.0),
        ("", 10.0),
        ("5", 10.0),  # Flagger: shorter than 2 characters means the 10s default
        ("30s", 30.0),
        ("1m", 60.0),
        ("500ms", 0.5),
        ("0s", 10.0),
        ("later", 10.0),
    ],
)
def test_webhook_timeout(text: str | None, seconds: float) -> None:
    assert webhook_timeout_seconds(text) == seconds


# --------------------------------------------------------------------------------------------------
# Strategy and weights


@pytest.mark.parametrize(
    ("iterations", "has_match", "strategy"),
    [
        (5, True, Strategy.AB_TESTING),
        (5, False, Strategy.BLUE_GREEN),
        (0, True, Strategy.CANARY),
        (0, False, Strategy.CANARY),
    ],
)
def test_strategy_follows_flagger_deployment_strategy(iterations: int, has_match: bool, strategy: Strategy) -> None:
    plan = plan_for(iterations=iterations, has_match=has_match, step_weight=10)

    assert plan.strategy == strategy
    assert plan.warnings == ()


def test_threshold_below_one_means_one() -> None:
    assert plan_for(step_weight=10, threshold=0).threshold == 1
    assert plan_for(step_weight=10, threshold=-3).threshold == 1
    assert plan_for(step_weight=10, threshold=5).threshold == 5


@pytest.mark.parametrize(
    ("max_weight", "step_weights", "expected"),
    [
        (None, (), 100),
        (0, (), 100),
        (50, (), 50),
        (50, (1, 2, 30), 30),  # with stepWeights the last step is the maximum
        (None, (10, 120), 100),
    ],
)
def test_effective_max_weight(max_weight: int | None, step_weights: tuple[int, ...], expected: int) -> None:
    assert effective_max_weight(max_weight, step_weights) == expected


def test_step_weight_takes_precedence_over_step_weights() -> None:
    plan = plan_for(step_weight=25, step_weights=(1, 2, 3))

    assert next_step_weight(plan, 0) == 25
    assert next_step_weight(plan, 50) == 25


@pytest.mark.parametrize(
    ("canary_weight", "step"),
    [
        (0, 5),  # the first step
        (5, 15),  # from a step to the next one
        (20, 30),
        (50, 50),  # the last step: whatever remains to 100
        (30, 70),  # a weight that is not a step (e.g. after a manual change): whatever remains to 100
        (100, 1),  # at 100% any positive step lets the canary promote
    ],
)
def test_next_step_weight_with_step_weights(canary_weight: int, step: int) -> None:
    assert next_step_weight(plan_for(step_weights=(5, 20, 50)), canary_weight) == step


def test_next_step_weight_never_goes_past_full_traffic() -> None:
    plan = plan_for(step_weights=(60, 150))

    assert next_step_weight(plan, 0) == 60
    assert next_step_weight(plan, 60) == 40


@pytest.mark.parametrize(
    ("canary_weight", "iterations", "mirror", "mirrored", "first"),
    [
        (0, 0, False, False, True),
        (0, 0, True, False, True),
        (0, 0, True, True, False),  # mirrored traffic reaches the canary: analyse it
        (0, 0, False, True, True),  # mirrored routes count only when the analysis asks for mirroring
        (10, 0, False, False, False),
        (0, 1, False, False, False),
    ],
)
def test_first_analysis_tick(canary_weight: int, iterations: int, mirror: bool, mirrored: bool, first: bool) -> None:
    assert is_first_analysis_tick(canary_weight, iterations, mirror, mirrored) is first


# --------------------------------------------------------------------------------------------------
# Metric verdicts


@pytest.mark.parametrize(
    ("value", "minimum", "maximum", "passed"),
    [
        (99.0, 99.0, None, True),
        (98.99, 99.0, None, False),
        (500.0, None, 500.0, True),
        (500.1, None, 500.0, False),
        (5.0, 5.0, 5.0, True),
        (-1.0, None, None, True),
        (0.0, 0.0, 10.0, True),
    ],
)
def test_threshold_range_bounds_are_inclusive(
    value: float, minimum: float | None, maximum: float | None, passed: bool
) -> None:
    assert metric_verdict("error-rate", value, minimum, maximum).passed is passed


def test_success_rate_below_minimum_says_so() -> None:
    verdict = metric_verdict(BUILTIN_SUCCESS_RATE, 98.6912, 99.0, None)

    assert not verdict.passed
    assert verdict.message.startswith("Halt advancement success rate 98.69% < 99")


def test_request_duration_above_maximum_says_so_in_milliseconds() -> None:
    verdict = metric_verdict(BUILTIN_DURATION, 1500.0, None, 500.0)

    assert not verdict.passed
    assert verdict.message == "Halt advancement request duration 1500ms > 500ms"


def test_custom_metric_messages_name_the_metric() -> None:
    assert metric_verdict("error-rate", 7.5, None, 5.0).message == "Halt advancement error-rate 7.5 > 5"
    assert metric_verdict("throughput", 2.0, 3.0, None).message == "Halt advancement throughput 2 < 3"
    assert metric_verdict("error-rate", 1.0, None, 5.0).passed


@pytest.mark.parametrize("value", [None, math.nan])
def test_no_values_is_a_failed_check(value: float | None) -> None:
    verdict = metric_verdict(BUILTIN_SUCCESS_RATE, value, 99.0, None, target="podinfo.test")

    assert not verdict.passed
    assert verdict.message == (
        "Halt advancement no values found for metric request-success-rate "
        "probably podinfo.test is not receiving traffic"
    )


def test_no_values_fails_even_without_bounds() -> None:
    verdict = metric_verdict("custom", None, None, None)

    assert not verdict.passed
    assert verdict.message == "Halt advancement no values found for metric custom"


def test_deprecated_threshold_is_a_minimum_for_success_rate_and_a_maximum_otherwise() -> None:
    assert metric_bounds(BUILTIN_SUCCESS_RATE, None, None, 99.0) == (99.0, None)
    assert metric_bounds(BUILTIN_DURATION, None, None, 500.0) == (None, 500.0)
    assert metric_bounds("error-rate", None, None, 1.0) == (None, 1.0)


def test_threshold_range_wins_over_deprecated_threshold() -> None:
    assert metric_bounds(BUILTIN_SUCCESS_RATE, 95.0, None, 99.0) == (95.0, None)
    assert metric_bounds("latency", None, 300.0, 100.0) == (None, 300.0)
    assert metric_bounds("latency", None, None, None) == (None, None)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9)


@given(value=finite, minimum=st.none() | finite, maximum=st.none() | finite)
def test_metric_verdict_passes_iff_within_inclusive_range(
    value: float, minimum: float | None, maximum: float | None
) -> None:
    within = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)

    verdict = metric_verdict("m", value, minimum, maximum)

    assert verdict.passed is within
    assert verdict.message.startswith("Halt advancement") is not within


# --------------------------------------------------------------------------------------------------
# Webhooks and identity


@pytest.mark.parametrize("status_code", [200, 201, 202])
def test_webhook_succeeds_up_to_202(status_code: int) -> None:
    assert webhook_succeeded(status_code)


@pytest.mark.parametrize("status_code", [None, 203, 204, 301, 302, 304, 400, 403, 404, 429, 500, 502, 503])
def test_webhook_fails_from_203_and_without_answer(status_code: int | None) -> None:
    assert not webhook_succeeded(status_code)


def test_revision_checksum_is_short_and_stable() -> None:
    checksum = revision_checksum("podinfo:6.0.1", {"configmap/podinfo": "abc123"})

    assert checksum == revision_checksum("podinfo:6.0.1", {"configmap/podinfo": "abc123"})
    assert len(checksum) == 16
    assert int(checksum, 16) >= 0
    assert revision_checksum("podinfo:6.0.1") == revision_checksum("podinfo:6.0.1", {})


def test_revision_checksum_does_not_mix_up_revision_and_configs() -> None:
    assert revision_checksum("a|x=1") != revision_checksum("a", {"x": "1"})
    assert revision_checksum("r", {"a": "b|c=d"}) != revision_checksum("r", {"a": "b", "c": "d"})


configs = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)


@given(revision=st.text(), other_revision=st.text(), tracked=configs, other_tracked=configs)
def test_revision_checksum_changes_with_revision_or_configs(
    revision: str, other_revision: str, tracked: dict[str, str], other_tracked: dict[str, str]
) -> None:
    assert revision_checksum(revision, tracked) == revision_checksum(revision, dict(reversed(tracked.items())))
    assume((revision, tracked) != (other_revision, other_tracked))
    assert revision_checksum(revision, tracked) != revision_checksum(other_revision, other_tracked)


# --------------------------------------------------------------------------------------------------
# Texts users see in alerts and in `kubectl get canary`


@pytest.mark.parametrize(
    ("plan", "description"),
    [
        (plan_for(iterations=3, has_match=True), "A/B Testing"),
        (plan_for(iterations=3), "Blue/Green"),
        (plan_for(step_weight=20, max_weight=50), "Weight step: 20 max: 50"),
        (plan_for(step_weights=(1, 5, 25)), "Weight steps: 1,5,25 max: 25"),
    ],
)
def test_traffic_routing_description(plan: AnalysisPlan, description: str) -> None:
    assert traffic_routing_description(plan) == description


def test_promoted_condition_follows_flagger() -> None:
    assert promoted_condition(Phase.SUCCEEDED) == (
        "True",
        "Canary analysis completed successfully, promotion finished.",
    )
    assert promoted_condition(Phase.FAILED, "DaemonSet") == (
        "False",
        "Canary analysis failed, DaemonSet scaled to zero.",
    )
    assert promoted_condition(Phase.WAITING_PROMOTION) == ("Unknown", "Waiting for approval.")
    assert {promoted_condition(phase)[0] for phase in Phase} <= {"True", "False", "Unknown"}
