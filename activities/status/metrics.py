"""The worker's release metrics: Flagger's Prometheus families (pkg/metrics/recorder.go) plus canaryflow extras,
kept current from status reports.

Names, labels and values follow Flagger so its dashboards and alert rules work unchanged: the `name` label is the
target's name (not the Canary's), `flagger_canary_status` is 0 while Progressing, 2 once Failed and 1 otherwise.
Where Flagger observes `flagger_canary_duration_seconds` on every analysis tick, a release here is observed once, when
it finishes: the seconds from the start of its analysis to its final transition.

Each worker exports what the reports it handled say; the latest report of a release wins, an older or repeated one
changes nothing, and a finished release is counted once in the successes/failures counters.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from activities.contracts import StatusReport
from activities.status.base import register_status_sink
from workflows.decisions import Phase

SINK_NAME = "metrics"

STATUS_PROGRESSING = 0
STATUS_OTHER = 1
STATUS_FAILED = 2

ANALYSIS_COMPLETED = "completed"
ANALYSIS_SKIPPED = "skipped"
DEFAULT_STRATEGY = "canary"

KNOWN_PHASES = tuple(phase.value for phase in Phase)


def _report_order(report: StatusReport) -> tuple[float, int]:
    """Releases of one workflow id are ordered by their start, reports of one release by their sequence."""
    started = report.started_at.timestamp() if report.started_at is not None else float("-inf")
    return started, report.sequence


@dataclass
class _ReleaseSeen:
    order: tuple[float, int]
    phase: str = ""
    counted_finishes: set[tuple[float, str]] = field(default_factory=set)  # (started_at, revision) of releases


class PrometheusStatusSink:
    """A status sink exporting the release families into `registry` (a private one when None)."""

    name = SINK_NAME

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        canary = ["name", "namespace"]
        outcome = [*canary, "deployment_strategy", "analysis_status"]
        self._total = self._gauge("flagger_canary_total", "Total number of canary object", ["namespace"])
        self._status = self._gauge("flagger_canary_status", "Last canary analysis result", canary)
        self._weight = self._gauge(
            "flagger_canary_weight", "The virtual service destination weight current value", ["workload", "namespace"]
        )
        self._duration = Histogram(
            "flagger_canary_duration_seconds",
            "Seconds spent performing canary analysis.",
            canary,
            registry=self.registry,
        )
        self._analysis = self._gauge(
            "flagger_canary_metric_analysis", "Last canary analysis result per metric", [*canary, "metric"]
        )
        self._successes = Counter(
            "flagger_canary_successes", "Total number of canary successes", outcome, registry=self.registry
        )
        self._failures = Counter(
            "flagger_canary_failures", "Total number of canary failures", outcome, registry=self.registry
        )
        self._info = self._gauge("canaryflow_info", "canaryflow version", ["version"])
        self._phase = self._gauge(
            "canaryflow_release_phase", "1 for the release's current phase, 0 for the others", [*canary, "phase"]
        )
        self._failed_checks = self._gauge(
            "canaryflow_canary_failed_checks", "Failed checks of the current analysis", canary
        )
        self._threshold = self._gauge(
            "canaryflow_canary_failed_checks_threshold", "Failed checks that roll the release back", canary
        )
        self._iterations = self._gauge("canaryflow_canary_iterations", "Iterations of the current analysis", canary)
        self._mirrored = self._gauge("canaryflow_canary_mirrored", "1 while traffic is mirrored to the canary", canary)
        self._transition = self._gauge(
            "canaryflow_release_last_transition_timestamp_seconds", "When the release last changed phase", canary
        )
        self._info.labels(_version()).set(1)
        self._canaries: dict[str, set[str]] = {}  # namespace -> target names seen
        self._releases: dict[str, _ReleaseSeen] = {}  # workflow id -> what was applied last

    def _gauge(self, name: str, documentation: str, labels: list[str]) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    async def publish(self, report: StatusReport) -> None:
        self.apply(report)

    def apply(self, report: StatusReport) -> None:
        """Export `report` unless a newer report of its workflow was exported already."""
        order = _report_order(report)
        seen = self._releases.get(report.workflow_id)
        if seen is not None and order < seen.order:
            return  # a late copy of an older report: the newer state is exported already
        if seen is None:
            seen = self._releases[report.workflow_id] = _ReleaseSeen(order=order)
        seen.order = order
        self._set_gauges(report, seen)
        if report.finished:
            self._count_finish(report, seen)

    def _set_gauges(self, report: StatusReport, seen: _ReleaseSeen) -> None:
        name, namespace = report.target_name, report.namespace
        self._canaries.setdefault(namespace, set()).add(name)
        self._total.labels(namespace).set(len(self._canaries[namespace]))
        self._status.labels(name, namespace).set(_status_value(report.phase))
        self._weight.labels(f"{name}-primary", namespace).set(report.primary_weight)
        self._weight.labels(name, namespace).set(report.canary_weight)
        for metric, value in report.last_metrics.items():
            if value is not None:  # Flagger leaves the gauge as it was when a query finds no values
                self._analysis.labels(name, namespace, metric).set(value)
        for phase in {*KNOWN_PHASES, seen.phase, report.phase} - {""}:
            self._phase.labels(name, namespace, phase).set(1 if phase == report.phase else 0)
        seen.phase = report.phase
        self._failed_checks.labels(name, namespace).set(report.failed_checks)
        self._threshold.labels(name, namespace).set(report.threshold)
        self._iterations.labels(name, namespace).set(report.iterations)
        self._mirrored.labels(name, namespace).set(1 if report.mirrored else 0)
        self._transition.labels(name, namespace).set(report.last_transition_time.timestamp())

    def _count_finish(self, report: StatusReport, seen: _ReleaseSeen) -> None:
        if report.phase not in (Phase.SUCCEEDED, Phase.FAILED):
            return  # Initialized only: Flagger counts no outcome for a canary's first sight
        release = (seen.order[0], report.revision)
        if release in seen.counted_finishes:
            return
        seen.counted_finishes.add(release)
        strategy = _deployment_strategy(report)
        if report.phase == Phase.SUCCEEDED:
            analysis = ANALYSIS_SKIPPED if report.skipped_analysis else ANALYSIS_COMPLETED
            self._successes.labels(report.target_name, report.namespace, strategy, analysis).inc()
        else:
            self._failures.labels(report.target_name, report.namespace, strategy, ANALYSIS_COMPLETED).inc()
        if report.started_at is not None:
            seconds = max(0.0, (report.last_transition_time - report.started_at).total_seconds())
            self._duration.labels(report.target_name, report.namespace).observe(seconds)


def _status_value(phase: str) -> int:
    if phase == Phase.PROGRESSING:
        return STATUS_PROGRESSING
    if phase == Phase.FAILED:
        return STATUS_FAILED
    return STATUS_OTHER


def _deployment_strategy(report: StatusReport) -> str:
    """Flagger's label values: canary | blue-green | ab-testing (mirroring is blue-green)."""
    return report.strategy or DEFAULT_STRATEGY


def _version() -> str:
    try:
        return importlib.metadata.version("canaryflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_process_sink: PrometheusStatusSink | None = None


def register_metrics_sink() -> PrometheusStatusSink:
    """Register the process's metrics sink (once; later calls return it) in a registry that also carries the
    process, platform and garbage-collector families, so one scrape of the worker shows its health too."""
    global _process_sink
    if _process_sink is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        _process_sink = PrometheusStatusSink(registry)
    register_status_sink(_process_sink)
    return _process_sink
