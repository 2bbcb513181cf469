"""How hard a release leans on the Kubernetes API, per router, counted on fakekube's request log.

Real podinfo releases run through the real CanaryRelease workflow on Temporal's time-skipping test server, with
a worker whose `KubernetesWorkload` and Kubernetes routers talk to fakekube (Kubelet in "ready" mode). Per router
three releases run back to back on a fresh fakekube:

- `initialize`: first sight of the target (no image given): the primary and the routing are bootstrapped, no
  analysis;
- `promoted`: image v2, stepWeight 25, maxWeight 50, threshold 2, the two builtin metrics answered by a stand-in
  observer with healthy values (no Prometheus);
- `rolled_back`: image v3, the same analysis, the stand-in answering a 50% success rate.

For each release: Kubernetes API requests by verb (GET on an object, LIST on a collection, WATCH, POST, PUT,
PATCH, DELETE) and total, answers >= 400, analysis ticks and requests per tick, wall time, and the workflow's
start-to-close time on the server's clock (`virtual_seconds`, the skipped analysis intervals included). Thin
wrapper activities (same names and types as the dispatch activities they call) time every workload, router and
metric activity call, `workload.initialize`, `router.set_routes` and `workload.promote` first, and count the
requests each call made. fakekube's own cost per request
(the same kubernetes client, loopback HTTP and the fake's handling) is measured separately on ConfigMaps, and
`estimated_fakekube_seconds` multiplies it out per release so it can be subtracted.

`uv run python -m benchmarks.kube_api_load [--routers istio,nginx] [--cost-samples N]`; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import httpx
from kubernetes import client as k8s
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import contracts as c
from activities.contracts import MetricQuery
from activities.dispatch import DISPATCH_ACTIVITIES
from activities.metrics.base import MetricProvider, register_builtin_observer
from activities.registry import default_activities
from activities.routers.base import register_router, router_key
from activities.routers.kube_factory import kubernetes_routers
from activities.workloads.base import register_workload
from activities.workloads.kubernetes import KubernetesWorkload
from canaryflow.client import start_release
from canaryflow.devserver import ensure_search_attributes
from canaryflow.loader import parse_resource
from canaryflow.settings import Settings
from canaryflow.shared import SEARCH_ATTRIBUTES
from canaryflow.spec import Canary
from tests.fakekube.fake import FakeKube
from tests.fakekube.kubelet import Kubelet
from tests.kube.kube_helpers import podinfo_canary
from tests.kube.release_worker import podinfo_deployment
from tests.kube.router_fixtures import ROUTER_DATA, yaml_object
from workers.worker import build_worker
from workflows.model import ReleaseRequest, ReleaseState
from workflows.release import CanaryRelease

NS = "test"
IMAGES = {
    "initialize": None,  # first sight: the target keeps v1, which the primary copies
    "promoted": "ghcr.io/stefanprodan/podinfo:6.0.1",
    "rolled_back": "ghcr.io/stefanprodan/podinfo:6.0.2",
}
ANALYSIS: dict[str, Any] = {
    "interval": "1m",
    "threshold": 2,
    "stepWeight": 25,
    "maxWeight": 50,
    "metrics": [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"},
    ],
}
ROUTER_SERVICES: dict[str, dict[str, Any]] = {
    "istio": {},
    "gatewayapi:v1beta1": {
        "gatewayRefs": [{"name": "gateway", "namespace": "istio-ingress"}],
        "hosts": ["www.example.com"],
    },
    "linkerd": {},
    "nginx": {"port": 80, "targetPort": 9898},
    "kubernetes": {},
}
TIMED_ACTIVITIES = (c.ACT_WORKLOAD_INITIALIZE, c.ACT_ROUTER_SET_ROUTES, c.ACT_WORKLOAD_PROMOTE)
VERBS = ("GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE")


# ----------------------------------------------------------------------------------------------------------------
# Stand-in metrics and timed activities


@dataclass
class StandInMetrics:
    """Answers the builtin metrics without Prometheus: healthy values, or a 50% success rate when not."""

    healthy: bool = True

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        if query.metric_name == "request-success-rate":
            return 100.0 if self.healthy else 50.0
        return 120.0  # request-duration, milliseconds

    async def is_online(self, query: MetricQuery) -> bool:
        return True


@dataclass
class StandInObserver:
    metrics: StandInMetrics

    def query(self, query: MetricQuery) -> str:
        return f"stand-in {query.metric_name}"

    def provider(self, query: MetricQuery) -> MetricProvider:
        return self.metrics


@dataclass(frozen=True)
class Call:
    seconds: float
    kube_requests: int


@dataclass
class CallRecorder:
    """Wall time and fakekube requests of each timed activity call (releases run one at a time)."""

    fake: FakeKube | None = None
    calls: dict[str, list[Call]] = field(default_factory=dict)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        assert self.fake is not None
        before, started = len(self.fake.requests), time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.calls.setdefault(name, []).append(Call(elapsed, len(self.fake.requests) - before))


RECORDER = CallRecorder()


def timed(inner: Callable[..., Any]) -> Callable[..., Any]:
    """An activity of the same name and types as `inner` (a one-argument dispatch activity) that records its calls."""
    name = activity._Definition.must_from_callable(inner).name or inner.__name__  # the SDK's own lookup

    async def wrapper(argument: Any) -> Any:
        with RECORDER.measure(name):
            return await inner(argument)

    # Temporal decodes the argument from these hints, as it would for `inner`.
    wrapper.__annotations__ = get_type_hints(inner)
    wrapper.__signature__ = inspect.signature(inner)  # type: ignore[attr-defined]
    wrapper.__name__ = f"timed_{inner.__name__}"
    return activity.defn(name=name)(wrapper)


def bench_activities() -> list[Callable[..., Any]]:
    dispatched = set(DISPATCH_ACTIVITIES)
    kept = [a for a in default_activities() if a not in dispatched]
    return [*kept, *(timed(a) for a in DISPATCH_ACTIVITIES)]


# ----------------------------------------------------------------------------------------------------------------
# Request classification


def verb_of(method: str, path: str, query: dict[str, str]) -> str:
    """GET on a collection is LIST (WATCH with watch=true); discovery paths (/api, /apis/g/v) count as GET."""
    if method != "GET":
        return method
    if query.get("watch") in ("true", "1"):
        return "WATCH"
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return "GET"
    if not rest:
        return "GET"
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]  # the namespaced resource and what follows
    return "LIST" if len(rest) == 1 else "GET"


def count_requests(fake: FakeKube, start: int) -> dict[str, int]:
    recorded = fake.requests[start:]
    verbs = Counter(verb_of(r.method, r.path, r.query) for r in recorded)
    counts = {verb: verbs.get(verb, 0) for verb in VERBS}
    counts["total"] = len(recorded)
    counts["answered_4xx_5xx"] = sum(1 for r in recorded if r.status >= 400)
    return counts


# ----------------------------------------------------------------------------------------------------------------
# The platform: fakekube, a worker, releases


def podinfo_canary_object(provider: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"provider": provider, "service": {"port": 9898, **ROUTER_SERVICES[provider]}}
    if provider == "nginx":
        spec["ingressRef"] = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"}
    return podinfo_canary(NS, ANALYSIS, api_version="flagger.app/v1beta1", **spec)


def fresh_platform(fake: FakeKube, canary_object: dict[str, Any]) -> None:
    """A clean fakekube with the podinfo target and its Canary (the owner of what the release creates)."""
    fake.reset()
    fake.register_fixture_crds()
    fake.create_namespace(NS)
    Kubelet(fake, "ready")
    fake.seed(podinfo_deployment(NS))
    fake.seed(canary_object)
    if canary_object["spec"]["provider"] == "nginx":
        fake.seed(yaml_object(ROUTER_DATA / "nginx" / "ingress-podinfo.yaml"))


@dataclass(frozen=True)
class Release:
    phase: str
    requests: dict[str, int]
    ticks: int
    wall_seconds: float
    virtual_seconds: float
    requests_per_tick: float | None


async def run_release(
    env: WorkflowEnvironment, task_queue: str, fake: FakeKube, canary: Canary, image: str | None
) -> Release:
    request = ReleaseRequest(
        canary=canary,
        revision=f"{image or 'first-sight'}-{uuid.uuid4().hex[:6]}",
        image=image,
        requested_by="benchmark",
        min_interval_seconds=0,
    )
    start_index = len(fake.requests)
    started = time.perf_counter()
    handle: WorkflowHandle[Any, Any] = (
        await start_release(env.client, request, task_queue=task_queue, cluster=uuid.uuid4().hex[:8])
    ).handle
    try:
        phase = (await handle.result()).phase
    except WorkflowFailureError:
        phase = "Failed"
    wall = time.perf_counter() - started
    described = await handle.describe()
    assert described.close_time is not None
    virtual = (described.close_time - described.start_time).total_seconds()  # workflow time, skips included
    requests = count_requests(fake, start_index)
    state: ReleaseState = await handle.query(CanaryRelease.state)
    return Release(
        phase=phase,
        requests=requests,
        ticks=state.ticks,
        wall_seconds=round(wall, 3),
        virtual_seconds=round(virtual, 1),
        requests_per_tick=round(requests["total"] / state.ticks, 1) if state.ticks else None,
    )


# ----------------------------------------------------------------------------------------------------------------
# fakekube's own cost


def _median_ms(action: Callable[[], object], samples: int) -> float:
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return round(statistics.median(durations) * 1000, 3)


def fakekube_cost(fake: FakeKube, samples: int) -> dict[str, float]:
    """Median milliseconds per request through the kubernetes client (what the activities use), per verb,
    on ConfigMaps (no Kubelet reaction), plus a bare httpx GET for the client library's share."""
    fake.reset()
    fake.create_namespace(NS)
    api = fake.api_client()
    core = k8s.CoreV1Api(api)
    for index in range(10):
        core.create_namespaced_config_map(NS, {"metadata": {"name": f"filler-{index}"}, "data": {"k": "v"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "probe"}, "data": {"k": "v"}})
    created = iter(range(samples))
    deleted = iter(range(samples))
    replace_body = core.read_namespaced_config_map("probe", NS)
    cost = {
        "GET": _median_ms(lambda: core.read_namespaced_config_map("probe", NS), samples),
        "LIST": _median_ms(lambda: core.list_namespaced_config_map(NS), samples),
        "POST": _median_ms(
            lambda: core.create_namespaced_config_map(NS, {"metadata": {"name": f"made-{next(created)}"}}), samples
        ),
        "PUT": _median_ms(lambda: core.replace_namespaced_config_map("probe", NS, _unversioned(replace_body)), samples),
        "PATCH": _median_ms(
            lambda: core.patch_namespaced_config_map("probe", NS, {"data": {"k": uuid.uuid4().hex}}), samples
        ),
        "DELETE": _median_ms(lambda: core.delete_namespaced_config_map(f"made-{next(deleted)}", NS), samples),
    }
    with httpx.Client(base_url=fake.url, trust_env=False) as raw:
        cost["raw_http_GET"] = _median_ms(lambda: raw.get(f"/api/v1/namespaces/{NS}/configmaps/probe"), samples)
    api.close()
    return cost


def _unversioned(config_map: k8s.V1ConfigMap) -> k8s.V1ConfigMap:
    config_map.metadata.resource_version = None  # an unconditional replace, no conflict between samples
    return config_map


def fakekube_seconds(requests: dict[str, int], cost: dict[str, float]) -> float:
    per_verb = {**cost, "WATCH": cost["GET"]}
    return round(sum(requests[verb] * per_verb[verb] for verb in VERBS) / 1000, 3)


# ----------------------------------------------------------------------------------------------------------------
# Report


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))  # nearest rank
    return ordered[min(rank, len(ordered)) - 1]


def activity_summary(calls: dict[str, list[Call]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in [*TIMED_ACTIVITIES, *sorted(set(calls) - set(TIMED_ACTIVITIES))]:
        found = calls.get(name, [])
        if not found:
            summary[name] = {"calls": 0}
            continue
        seconds = [call.seconds * 1000 for call in found]
        summary[name] = {
            "calls": len(found),
            "median_ms": round(statistics.median(seconds), 2),
            "p95_ms": round(_percentile(seconds, 0.95), 2),
            "kube_requests_per_call": round(statistics.mean(call.kube_requests for call in found), 1),
            "kube_requests": sum(call.kube_requests for call in found),
        }
    return summary


async def measure(routers: list[str], cost_samples: int) -> dict[str, Any]:
    server = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(server), data_converter=pydantic_data_converter
    )
    fake = FakeKube()
    fake.start()
    RECORDER.fake = fake
    metrics = StandInMetrics()
    all_calls: dict[str, list[Call]] = {}
    per_router: dict[str, Any] = {}
    try:
        await ensure_search_attributes(env.client, env.client.namespace, SEARCH_ATTRIBUTES)
        api_client = fake.api_client()
        register_workload("kubernetes", KubernetesWorkload(api_client, poll_seconds=0.05))
        for key, router in kubernetes_routers(api_client).items():
            register_router(key, router)
            register_builtin_observer(key, StandInObserver(metrics))
        settings = Settings(task_queue=f"bench-{uuid.uuid4().hex[:8]}", min_interval_seconds=0)
        async with build_worker(env.client, settings, activities=bench_activities()):
            for provider in routers:
                canary_object = podinfo_canary_object(provider)
                fresh_platform(fake, canary_object)
                RECORDER.calls = {}
                canary = parse_resource(canary_object)
                assert isinstance(canary, Canary)
                releases: dict[str, Release] = {}
                for kind, image in IMAGES.items():
                    metrics.healthy = kind != "rolled_back"
                    releases[kind] = await run_release(env, settings.task_queue, fake, canary, image)
                per_router[provider] = {
                    "router_key": router_key(provider),
                    "releases": {kind: vars(release) for kind, release in releases.items()},
                    "activities": activity_summary(RECORDER.calls),
                }
                for name, calls in RECORDER.calls.items():
                    all_calls.setdefault(name, []).extend(calls)
        cost = fakekube_cost(fake, cost_samples)
    finally:
        fake.stop()
        await env.shutdown()
    for report in per_router.values():
        for release in report["releases"].values():
            release["estimated_fakekube_seconds"] = fakekube_seconds(release["requests"], cost)
    return {
        "benchmark": "kube_api_load",
        "config": {
            "analysis": ANALYSIS,
            "metrics": "stand-in builtin observer: success rate 100 (promoted) / 50 (rolled back), duration 120 ms",
            "kubelet": "ready",
            "workload_poll_seconds": 0.05,
            "temporal": "time-skipping test server",
        },
        "routers": per_router,
        "activities_all_routers": activity_summary(all_calls),
        "fakekube_median_ms_per_request": cost,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", default=",".join(ROUTER_SERVICES), help="comma-separated Canary providers")
    parser.add_argument("--cost-samples", type=int, default=200, help="requests per verb for fakekube's own cost")
    args = parser.parse_args()
    routers = [name for name in args.routers.split(",") if name]
    unknown = [name for name in routers if name not in ROUTER_SERVICES]
    if unknown:
        parser.error(f"unknown routers {unknown}; known: {', '.join(ROUTER_SERVICES)}")
    # The SDK core and the test server may log on stdout; the one JSON object must be alone there.
    json_out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    result = await measure(routers, args.cost_samples)
    json_out.write(json.dumps(result) + "\n")
    json_out.close()


if __name__ == "__main__":
    asyncio.run(main())
