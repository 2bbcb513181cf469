"""The Kubernetes status sink writes a Canary's status, `Promoted` condition and Events the way Flagger does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.contracts import ReportedDecision, StatusReport
from activities.status.kubernetes import (
    REPORT_ANNOTATION,
    build_status,
    event_name,
    promoted_condition,
    report_position,
)
from tests.observability.reports import report as observability_report

T0 = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


def make_report(**overrides: Any) -> StatusReport:
    """The observability tests' report of a canaryflow.dev Canary `podinfo` in its first analysis step at T0."""
    values: dict[str, Any] = {
        "canary_api_version": "canaryflow.dev/v1beta1",
        "name": "podinfo",
        "revision": "rev-a",
        "iterations": 0,
        "last_transition_time": T0,
        "started_at": T0,
    }
    return observability_report(**{**values, **overrides})


def decision(index: int, message: str, kind: str = "event", at: datetime = T0) -> ReportedDecision:
    return ReportedDecision(index=index, at=at, phase="Progressing", kind=kind, message=message)


# ------------------------------------------------------------------------------------------------------------------
# Pure rules (Flagger's pkg/canary/status.go)


@pytest.mark.parametrize(
    ("phase", "status", "message"),
    [
        ("Initializing", "Unknown", "New Deployment detected, starting initialization."),
        ("Initialized", "True", "Deployment initialization completed."),
        ("Waiting", "Unknown", "Waiting for approval."),
        ("WaitingPromotion", "Unknown", "Waiting for approval."),
        ("Progressing", "Unknown", "New revision detected, progressing canary analysis."),
        ("Promoting", "Unknown", "Canary analysis completed, starting primary rolling update."),
        ("Finalising", "Unknown", "Canary analysis completed, routing all traffic to primary."),
        ("Succeeded", "True", "Canary analysis completed successfully, promotion finished."),
        ("Failed", "False", "Canary analysis failed, Deployment scaled to zero."),
        ("Terminating", "Unknown", "New Deployment detected, starting initialization."),
    ],
)
def test_promoted_condition_per_phase_matches_flagger(phase: str, status: str, message: str) -> None:
    assert promoted_condition(phase, "Deployment") == (status, message)


def test_weight_and_iterations_are_zeroed_outside_the_running_phases() -> None:
    succeeded = build_status({}, make_report(phase="Succeeded", canary_weight=0, iterations=3), None)
    assert (succeeded["canaryWeight"], succeeded["iterations"]) == (0, 0)
    waiting_promotion = build_status({}, make_report(phase="WaitingPromotion", canary_weight=50, iterations=4), None)
    assert (waiting_promotion["canaryWeight"], waiting_promotion["iterations"]) == (0, 4)  # Flagger's quirk
    failed_promotion = build_status({}, make_report(phase="Failed", canary_weight=100, failed_checks=2), None)
    assert (failed_promotion["canaryWeight"], failed_promotion["failedChecks"]) == (100, 2)


def test_last_promoted_spec_moves_only_on_initialized_and_succeeded() -> None:
    current = {"lastAppliedSpec": "rev-a", "lastPromotedSpec": "rev-a"}
    progressing = build_status(current, make_report(revision="rev-b"), None)
    assert (progressing["lastAppliedSpec"], progressing["lastPromotedSpec"]) == ("rev-b", "rev-a")
    failed = build_status(progressing, make_report(revision="rev-b", phase="Failed", canary_weight=0), None)
    assert failed["lastPromotedSpec"] == "rev-a"
    succeeded = build_status(progressing, make_report(revision="rev-b", phase="Succeeded"), None)
    assert succeeded["lastPromotedSpec"] == "rev-b"


def test_initialized_promotes_only_when_the_release_ends_there() -> None:
    on_the_way = build_status({}, make_report(phase="Initialized", revision="rev-b"), None)
    assert "lastPromotedSpec" not in on_the_way
    first_sight = build_status({}, make_report(phase="Initialized", revision="rev-a", finished=True), None)
    assert first_sight["lastPromotedSpec"] == "rev-a"


def test_condition_keeps_transition_time_while_its_status_stays() -> None:
    first = build_status({}, make_report(phase="Progressing"), None)
    later = T0 + timedelta(minutes=5)
    promoting = build_status(first, make_report(phase="Promoting", last_transition_time=later), None)
    [condition] = promoting["conditions"]
    assert condition["reason"] == "Promoting"
    assert condition["lastTransitionTime"] == "2026-11-22T03:00:00Z"  # still Unknown since Progressing
    assert condition["lastUpdateTime"] == "2026-11-22T03:05:00Z"
    done = T0 + timedelta(minutes=10)
    succeeded = build_status(promoting, make_report(phase="Succeeded", last_transition_time=done), None)
    assert succeeded["conditions"][0]["status"] == "True"
    assert succeeded["conditions"][0]["lastTransitionTime"] == "2026-11-22T03:10:00Z"


def test_report_position_orders_a_later_release_before_a_higher_sequence() -> None:
    old_release = make_report(sequence=40, started_at=T0)
    new_release = make_report(sequence=1, started_at=T0 + timedelta(milliseconds=300))
    assert report_position(new_release) > report_position(old_release)
    assert report_position(make_report(sequence=5)) > report_position(make_report(sequence=4))


def test_event_names_are_stable_per_decision_and_distinct_across_releases() -> None:
    report = make_report()
    assert event_name(report, decision(3, "x")) == event_name(make_report(sequence=9), decision(3, "x"))
    assert event_name(report, decision(3, "x")) != event_name(report, decision(4, "x"))
    later_release = decision(3, "x", at=T0 + timedelta(hours=1))
    assert event_name(report, decision(3, "x")) != event_name(report, later_release)
    assert event_name(report, decision(3, "x")).startswith("podinfo.")


def test_report_annotation_name_is_in_our_domain() -> None:
    assert REPORT_ANNOTATION.startswith("canaryflow.dev/")


# ------------------------------------------------------------------------------------------------------------------
# Against the API server (fakekube): what `kubectl get/wait/describe canary` shows


def canary_object(api_version: str = "canaryflow.dev/v1beta1", name: str = "podinfo") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "Canary",
        "metadata": {"name": name, "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10},
        },
    }


def stored_canary(fake_kube: Any, api_version: str = "canaryflow.dev/v1beta1") -> dict[str, Any]:
    canary = fake_kube.get(api_version, "Canary", "podinfo", "test")
    assert canary is not None
    return dict(canary)


def canary_events(fake_kube: Any) -> list[dict[str, Any]]:
    events = [e for e in fake_kube.list("v1", "Event", "test") if e["involvedObject"]["name"] == "podinfo"]
    return sorted(events, key=lambda e: e["message"])


async def test_release_reports_become_flagger_status_condition_and_events(fake_kube: Any) -> None:
    from activities.status.kubernetes import KubernetesStatusSink

    fake_kube.seed(canary_object())
    sink = KubernetesStatusSink(fake_kube.api_client())
    await sink.publish(
        make_report(
            phase="Progressing",
            revision="rev-b",
            canary_weight=10,
            failed_checks=1,
            sequence=3,
            new_decisions=[
                decision(4, "New revision detected! Scaling up podinfo.test"),
                decision(5, "Advance podinfo.test canary weight 10"),
                decision(6, "Halt podinfo.test advancement request duration 1.5s > 500ms", kind="warning"),
                decision(7, "phase Progressing", kind="phase"),
            ],
        )
    )
    status = stored_canary(fake_kube)["status"]
    assert status["phase"] == "Progressing"
    assert (status["canaryWeight"], status["failedChecks"], status["iterations"]) == (10, 1, 0)
    assert status["lastAppliedSpec"] == "rev-b"
    assert status["lastTransitionTime"] == "2026-11-22T03:00:00Z"
    [condition] = status["conditions"]
    assert condition == {
        "type": "Promoted",
        "status": "Unknown",
        "reason": "Progressing",
        "message": "New revision detected, progressing canary analysis.",
        "lastUpdateTime": "2026-11-22T03:00:00Z",
        "lastTransitionTime": "2026-11-22T03:00:00Z",
    }
    events = canary_events(fake_kube)
    assert [(e["type"], e["reason"], e["message"]) for e in events] == [
        ("Normal", "Synced", "Advance podinfo.test canary weight 10"),
        ("Warning", "Synced", "Halt podinfo.test advancement request duration 1.5s > 500ms"),
        ("Normal", "Synced", "New revision detected! Scaling up podinfo.test"),
    ]
    assert {e["involvedObject"]["kind"] for e in events} == {"Canary"}
    assert {e["involvedObject"]["apiVersion"] for e in events} == {"canaryflow.dev/v1beta1"}
    assert {e["involvedObject"]["uid"] for e in events} == {stored_canary(fake_kube)["metadata"]["uid"]}


async def test_succeeded_sets_promoted_true_and_last_promoted_spec(fake_kube: Any) -> None:
    from activities.status.kubernetes import KubernetesStatusSink

    fake_kube.seed(canary_object())
    sink = KubernetesStatusSink(fake_kube.api_client())
    await sink.publish(make_report(phase="Progressing", revision="rev-b", sequence=1))
    await sink.publish(
        make_report(
            phase="Succeeded",
            revision="rev-b",
            canary_weight=0,
            sequence=2,
            finished=True,
            last_transition_time=T0 + timedelta(minutes=3),
        )
    )
    status = stored_canary(fake_kube)["status"]
    assert (status["phase"], status["lastAppliedSpec"], status["lastPromotedSpec"]) == ("Succeeded", "rev-b", "rev-b")
    [condition] = status["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", "Succeeded")
    assert condition["message"] == "Canary analysis completed successfully, promotion finished."


async def test_kubectl_wait_for_promoted_condition_returns_once_succeeded(fake_kube: Any, tmp_path: Any) -> None:
    import asyncio
    import shutil

    from activities.status.kubernetes import KubernetesStatusSink

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    fake_kube.seed(canary_object())
    sink = KubernetesStatusSink(fake_kube.api_client())
    await sink.publish(make_report(phase="Progressing", sequence=1))
    wait = await asyncio.create_subprocess_exec(
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        "-n",
        "test",
        "wait",
        "canaries.canaryflow.dev/podinfo",
        "--for=condition=promoted",
        "--timeout=20s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.0)
    assert wait.returncode is None  # still waiting: Promoted is Unknown while Progressing
    await sink.publish(make_report(phase="Succeeded", canary_weight=0, sequence=2))
    stdout, stderr = await asyncio.wait_for(wait.communicate(), 25)
    assert wait.returncode == 0, stderr.decode()
    assert b"condition met" in stdout


async def test_duplicate_and_out_of_order_reports_change_nothing(fake_kube: Any) -> None:
    from activities.status.kubernetes import KubernetesStatusSink

    fake_kube.seed(canary_object())
    sink = KubernetesStatusSink(fake_kube.api_client())
    succeeded = make_report(
        phase="Succeeded",
        canary_weight=0,
        sequence=7,
        new_decisions=[decision(9, "Promotion completed! Scaling down podinfo.test")],
    )
    await sink.publish(succeeded)
    await sink.publish(succeeded)  # a retried activity
    await sink.publish(make_report(phase="Progressing", canary_weight=40, sequence=6))  # late, older report
    status = stored_canary(fake_kube)["status"]
    assert (status["phase"], status["canaryWeight"]) == ("Succeeded", 0)
    assert [e["message"] for e in canary_events(fake_kube)] == ["Promotion completed! Scaling down podinfo.test"]
    # The next release of the same canary starts its sequence again, later in time: it is applied.
    await sink.publish(
        make_report(phase="Progressing", revision="rev-c", sequence=1, started_at=T0 + timedelta(hours=1))
    )
    assert stored_canary(fake_kube)["status"]["lastAppliedSpec"] == "rev-c"


async def test_a_new_revisions_release_goes_from_succeeded_to_progressing_like_flagger(fake_kube: Any) -> None:
    from activities.status.kubernetes import KubernetesStatusSink

    fake_kube.seed(canary_object())
    sink = KubernetesStatusSink(fake_kube.api_client())
    await sink.publish(make_report(phase="Succeeded", revision="rev-a", canary_weight=0, sequence=9, finished=True))
    later = T0 + timedelta(hours=1)
    for sequence, phase in enumerate(("Initializing", "Initialized"), start=1):  # the next release checks the primary
        await sink.publish(make_report(phase=phase, revision="rev-b", sequence=sequence, started_at=later))
    status = stored_canary(fake_kube)["status"]
    assert (status["phase"], status["lastAppliedSpec"], status["lastPromotedSpec"]) == ("Succeeded", "rev-a", "rev-a")
    await sink.publish(make_report(phase="Progressing", revision="rev-b", sequence=3, started_at=later))
    status = stored_canary(fake_kube)["status"]
    assert (status["phase"], status["lastAppliedSpec"], status["lastPromotedSpec"]) == ("Progressing", "rev-b", "rev-a")


async def test_missing_canary_and_local_releases_are_ignored(fake_kube: Any) -> None:
    from activities.status.kubernetes import KubernetesStatusSink

    sink = KubernetesStatusSink(fake_kube.api_client())
    await sink.publish(
        make_report(new_decisions=[decision(0, "Initialization done! podinfo.test")])
    )  # no Canary object
    assert canary_events(fake_kube) == []
    fake_kube.seed(canary_object())
    await sink.publish(make_report(platform="local", phase="Succeeded", new_decisions=[decision(0, "x")]))
    assert "status" not in stored_canary(fake_kube) or not stored_canary(fake_kube)["status"]
    assert canary_events(fake_kube) == []


async def test_flagger_group_canary_gets_its_status(fake_kube: Any) -> None:
    from activities.status.kubernetes import KubernetesStatusSink

    fake_kube.seed(canary_object("flagger.app/v1beta1"))
    sink = KubernetesStatusSink(fake_kube.api_client())
    await sink.publish(
        make_report(canary_api_version="flagger.app/v1beta1", phase="Initialized", revision="rev-a", finished=True)
    )
    status = stored_canary(fake_kube, "flagger.app/v1beta1")["status"]
    assert (status["phase"], status["lastPromotedSpec"]) == ("Initialized", "rev-a")
    assert status["conditions"][0]["message"] == "Deployment initialization completed."
