"""Rollback latency on the real local stack, and what Flagger's tick-bound rollback would cost on that run.

A bad version (30% errors) is released with failed-check threshold N and interval I under steady load. While
it runs, HAProxy's runtime socket (weights) and its exporter (the canary server's responses) are polled every
50 ms.

- canaryflow: from the threshold-th failed check (its decision-log timestamp) to the first poll that shows
  100% on the primary; the requests the bad canary served in all, and after that failed check.
- Flagger's algorithm: it compares failedChecks with the threshold only at the start of the next tick, so
  its rollback starts one interval after the tick that failed, then writes the same routes. Its latency is
  modelled as I + the route write measured here; the requests it would add are the measured canary request
  rate times the extra seconds.
- A rollback at the failing tick (the route write right after the threshold-th failed check): latency = the
  route write; `saved_canary_requests` is what it would spare compared with the measured run.

`uv run python benchmarks/rollback_latency.py [--threshold N] [--interval SECONDS] [--rps R]`; prints one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from _stack import BenchStack, canary_responses, haproxy_paths, haproxy_weights, local_stack

from activities.routers import haproxy_config as hc
from canaryflow.spec import Canary
from workflows.model import Decision

POLL_SECONDS = 0.05
BAD_VERSION = "v2-bad"
METRIC = "request-success-rate"


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds, right after the weights were read
    canary_weight: int | None  # None while HAProxy does not answer
    primary_weight: int | None
    canary_requests: int | None  # responses of the canary server since HAProxy started
    canary_errors: int | None

    @property
    def all_on_primary(self) -> bool:
        return (self.primary_weight, self.canary_weight) == (100, 0)


@dataclass
class Poller:
    """Polls HAProxy's weights and canary counters in a thread until stopped."""

    paths: hc.HAProxyPaths
    router_metrics_port: int
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(trust_env=False) as client:
            while not self._stop.is_set():
                weights = haproxy_weights(self.paths)
                at = time.time()
                responses = canary_responses(client, self.router_metrics_port)
                self.samples.append(
                    Sample(
                        at,
                        weights[hc.CANARY] if weights else None,
                        weights[hc.PRIMARY] if weights else None,
                        sum(responses.values()) if responses else None,
                        responses.get("5xx", 0) if responses else None,
                    )
                )
                self._stop.wait(POLL_SECONDS)

    def stop(self) -> None:
        self._stop.set()


def _analysis(threshold: int, interval: float) -> dict[str, Any]:
    return {
        "interval": f"{interval:g}s",
        "threshold": threshold,
        "stepWeight": 20,
        "maxWeight": 60,
        "metrics": [{"name": METRIC, "interval": f"{interval:g}s", "thresholdRange": {"min": 99}}],
    }


def _counter_at(samples: list[Sample], moment: float) -> Sample:
    """The last sample with counters at or before `moment`."""
    return [s for s in samples if s.at <= moment and s.canary_requests is not None][-1]


def _steady_canary_rate(samples: list[Sample], routed: Sample) -> tuple[float, float]:
    """Canary requests per second while the canary held its last weight before the rollback, and that span."""
    before = [s for s in samples if s.at < routed.at and s.canary_requests is not None]
    last_weight = before[-1].canary_weight
    start = before[-1]
    for sample in reversed(before):
        if sample.canary_weight != last_weight:
            break
        start = sample
    span = before[-1].at - start.at
    requests = (before[-1].canary_requests or 0) - (start.canary_requests or 0)
    return (requests / span if span > 0 else 0.0), span


async def measure(bench: BenchStack, threshold: int, interval: float, rps: int) -> dict[str, Any]:
    analysis = _analysis(threshold, interval)
    canary: Canary = bench.canary("rollback", analysis, bad_versions=(BAD_VERSION,), load_rps=rps)
    local = canary.spec.local
    assert local is not None
    poller = Poller(haproxy_paths(bench.settings, canary), local.router_metrics_port)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    started = time.time()
    try:
        workflow_id = await bench.start(canary, BAD_VERSION)
        phase, decisions = await bench.finish(workflow_id)
    finally:
        await asyncio.sleep(0.5)  # a few samples after the end
        poller.stop()
        thread.join()
    ended = time.time()
    return _report(poller.samples, decisions, phase, threshold, interval, rps, ended - started)


def _report(
    samples: list[Sample],
    decisions: list[Decision],
    phase: str,
    threshold: int,
    interval: float,
    rps: int,
    total_seconds: float,
) -> dict[str, Any]:
    failed_checks = [d for d in decisions if d.kind == "warning" and d.message.startswith(f"{METRIC}: Halt")]
    rolling_back = next(d for d in decisions if d.message.startswith("Rolling back"))
    threshold_check = failed_checks[threshold - 1].at.timestamp()
    decided = rolling_back.at.timestamp()
    routed = next(s for s in samples if s.at >= threshold_check and s.all_on_primary)
    at_threshold, at_routed = _counter_at(samples, threshold_check), _counter_at(samples, routed.at)
    rate, rate_span = _steady_canary_rate(samples, routed)

    latency = routed.at - threshold_check
    next_tick = decided - threshold_check >= interval / 2
    route_write = routed.at - decided
    flagger_latency = interval + route_write
    extra_seconds = max(flagger_latency - latency, 0.0)
    extra_requests = rate * extra_seconds
    saved_requests = rate * max(latency - route_write, 0.0)
    served = at_routed.canary_requests or 0
    served_after_threshold = served - (at_threshold.canary_requests or 0)
    return {
        "benchmark": "rollback_latency",
        "config": {
            "threshold": threshold,
            "interval_seconds": interval,
            "step_weight": 20,
            "max_weight": 60,
            "bad_version_error_rate": 0.3,
            "load_requests_per_second": rps,
            "poll_seconds": POLL_SECONDS,
        },
        "phase": phase,
        "release_seconds": round(total_seconds, 2),
        "failed_checks": len(failed_checks),
        "canary_weight_at_rollback": next(
            s.canary_weight for s in reversed(samples) if s.at < routed.at and s.canary_weight is not None
        ),
        "canary_requests_per_second": round(rate, 2),
        "canary_rate_measured_over_seconds": round(rate_span, 2),
        "canaryflow": {
            "rollback_started_after_threshold_check_seconds": round(decided - threshold_check, 3),
            "rolls_back_at": "the next tick" if next_tick else "the failing tick",
            "latency_seconds": round(latency, 3),
            "route_write_seconds": round(route_write, 3),
            "canary_requests_before_rollback": served,
            "canary_errors_before_rollback": at_routed.canary_errors,
            "canary_requests_after_threshold_check": served_after_threshold,
        },
        "flagger_model": {
            "latency_seconds": round(flagger_latency, 3),
            "extra_seconds_vs_canaryflow": round(extra_seconds, 3),
            "extra_canary_requests": round(extra_requests, 1),
            "canary_requests_before_rollback": round(served + extra_requests, 1),
            "canary_requests_after_threshold_check": round(served_after_threshold + extra_requests, 1),
        },
        "rollback_at_failing_tick_model": {
            "latency_seconds": round(route_write, 3),
            "saved_canary_requests": round(saved_requests, 1),
            "canary_requests_before_rollback": round(served - saved_requests, 1),
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--rps", type=int, default=20, help="load through the apex, requests per second")
    args = parser.parse_args()
    async with local_stack() as bench:
        result = await measure(bench, args.threshold, args.interval, args.rps)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
