"""The HAProxy router against a real HAProxy 2.6 and real HTTP traffic (skipped when HAProxy is not installed)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, ReleaseTarget, Routes, SessionAffinityRoute, SetRoutes
from activities.routers.haproxy import HAProxyRouter, running_pid, runtime_command, stop_router
from activities.routers.haproxy_config import prometheus_targets
from canaryflow.spec import Canary
from tests.conftest import free_port
from tests.local.conftest import RoleServer

pytestmark = [
    pytest.mark.skipif(
        shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", "")) is None,
        reason="HAProxy is not installed: apt-get install -y --no-install-recommends haproxy",
    ),
    pytest.mark.timeout(30),
]

CANARY_WEIGHTED = {"interval": "10s", "threshold": 2, "stepWeight": 10}


def make_canary(
    primary_port: int,
    canary_port: int,
    analysis: dict[str, Any] | None = None,
    *,
    apex_port: int | None = None,
    router_metrics_port: int | None = None,
    metrics_path: str = "/metrics",
) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "canaryflow.dev/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "demo", "namespace": "test"},
            "spec": {
                "provider": "haproxy",
                "targetRef": {"apiVersion": "canaryflow.dev/v1beta1", "kind": "LocalApp", "name": "demo"},
                "service": {"port": apex_port or free_port()},
                "local": {
                    "command": ["{python}", "-m", "canaryflow.demoapp", "--port", "{port}"],
                    "version": "v1",
                    "primaryPort": primary_port,
                    "canaryPort": canary_port,
                    "routerMetricsPort": router_metrics_port or free_port(),
                    "metricsPath": metrics_path,
                },
                "analysis": analysis or CANARY_WEIGHTED,
            },
        }
    )


class Harness:
    """A router on a short state dir; every target it reconciled is finalized at the end."""

    def __init__(self, state_dir: Path, servers: dict[str, RoleServer]) -> None:
        self.state_dir = state_dir
        self.router = HAProxyRouter(state_dir)
        self.servers = servers
        self.targets: list[ReleaseTarget] = []

    def target(self, analysis: dict[str, Any] | None = None, **options: Any) -> ReleaseTarget:
        canary = make_canary(self.servers["primary"].port, self.servers["canary"].port, analysis, **options)
        target = ReleaseTarget(canary=canary)
        self.targets.append(target)
        return target

    async def route(
        self,
        target: ReleaseTarget,
        primary: int,
        canary: int,
        mirrored: bool = False,
        affinity: SessionAffinityRoute | None = None,
    ) -> None:
        routes = Routes(primary_weight=primary, canary_weight=canary, mirrored=mirrored)
        await self.router.set_routes(SetRoutes(target=target, routes=routes, session_affinity=affinity))


def apex_url(target: ReleaseTarget, path: str = "/") -> str:
    return f"http://127.0.0.1:{target.canary.spec.service.port}{path}"


def roles(target: ReleaseTarget, count: int, **request: Any) -> Counter[str]:
    """Which role answered each of `count` requests sent over one keep-alive connection."""
    with httpx.Client(timeout=5) as client:
        answers = [client.get(apex_url(target), **request) for _ in range(count)]
    assert all(answer.status_code == 200 for answer in answers), [answer.status_code for answer in answers]
    return Counter(answer.text for answer in answers)


def assert_split(answered: Counter[str], expected: dict[str, int]) -> None:
    """The exact weighted split, give or take the one request of where roundrobin's cycle starts."""
    assert set(answered) == set(expected), answered
    assert sum(answered.values()) == sum(expected.values())
    assert all(abs(answered[role] - count) <= 1 for role, count in expected.items()), answered


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def worker_pid(harness: Harness, target: ReleaseTarget) -> int:
    info = runtime_command(harness.router.paths(target.canary), "show info")
    return int(next(line for line in info.splitlines() if line.startswith("Pid:")).split(":")[1])


@pytest.fixture
async def harness(short_state_dir: Path, role_servers: dict[str, RoleServer]) -> AsyncIterator[Harness]:
    harness = Harness(short_state_dir, role_servers)
    try:
        yield harness
    finally:
        for target in harness.targets:
            await harness.router.finalize(target)


async def test_reconcile_starts_haproxy_in_its_own_session_routing_to_primary_only(harness: Harness) -> None:
    target = harness.target()
    await harness.router.reconcile(target)

    assert roles(target, 20) == {"primary": 20}
    master = running_pid(harness.router.paths(target.canary))
    assert master is not None
    assert os.getsid(master) == master != os.getsid(0)  # its own session: a SIGKILLed worker leaves it running
    local = target.canary.spec.local
    assert local is not None
    metrics = httpx.get(f"http://127.0.0.1:{local.router_metrics_port}/metrics").text
    assert 'haproxy_server_http_responses_total{proxy="backend",server="primary",code="2xx"} 20' in metrics
    assert httpx.get(f"http://127.0.0.1:{local.router_metrics_port}/stats").status_code == 200


async def test_set_routes_splits_traffic_exactly_and_get_routes_reads_live_weights(harness: Harness) -> None:
    target = harness.target()
    await harness.router.reconcile(target)

    await harness.route(target, 80, 20)

    assert_split(roles(target, 200), {"primary": 160, "canary": 40})
    assert await harness.router.get_routes(target) == Routes(primary_weight=80, canary_weight=20)


async def test_a_server_returning_from_weight_zero_does_not_starve_the_other(harness: Harness) -> None:
    target = harness.target()
    await harness.router.reconcile(target)
    await harness.route(target, 0, 100)
    # Roundrobin starved the canary for hundreds of requests after this many at 0/100 (without the bounce).
    assert roles(target, 1000) == {"canary": 1000}

    await harness.route(target, 80, 20)

    assert_split(roles(target, 100), {"primary": 80, "canary": 20})


async def test_reconcile_is_idempotent_and_a_config_change_reloads_keeping_weights(harness: Harness) -> None:
    target = harness.target()
    await harness.router.reconcile(target)
    paths = harness.router.paths(target.canary)
    master, worker = running_pid(paths), worker_pid(harness, target)

    await harness.router.reconcile(target)
    assert (running_pid(paths), worker_pid(harness, target)) == (master, worker)

    await harness.route(target, 70, 30)
    replacement = RoleServer("canary-b").start()
    try:
        spec = target.canary.spec.model_copy(deep=True)
        assert spec.local is not None
        spec.local.canary_port = replacement.port
        moved = ReleaseTarget(canary=target.canary.model_copy(update={"spec": spec}))
        await harness.router.reconcile(moved)

        assert running_pid(paths) == master
        assert worker_pid(harness, moved) != worker
        assert await harness.router.get_routes(moved) == Routes(primary_weight=70, canary_weight=30)
        assert_split(roles(moved, 100), {"primary": 70, "canary-b": 30})
    finally:
        replacement.stop()


async def test_haproxy_restarted_after_a_stop_keeps_the_weights(harness: Harness) -> None:
    target = harness.target()
    await harness.router.reconcile(target)
    await harness.route(target, 70, 30)

    assert stop_router(harness.state_dir, "test", "demo") is True
    assert running_pid(harness.router.paths(target.canary)) is None
    with pytest.raises(ApplicationError) as not_running:
        await harness.router.get_routes(target)
    assert not not_running.value.non_retryable

    await harness.router.reconcile(target)
    assert await harness.router.get_routes(target) == Routes(primary_weight=70, canary_weight=30)
    assert_split(roles(target, 100), {"primary": 70, "canary": 30})


async def test_a_stopped_primary_fails_no_request_while_the_canary_has_weight(harness: Harness) -> None:
    target = harness.target()
    await harness.router.reconcile(target)
    await harness.route(target, 80, 20)

    harness.servers["primary"].stop()  # what a restarting primary looks like to HAProxy

    assert roles(target, 50) == {"canary": 50}


AB_MATCH = [
    {"headers": {"x-canary": {"exact": "insider"}}},
    {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
    {"headers": {"x-tier": {"prefix": "beta-"}}},
    {"headers": {"x-region": {"suffix": "-eu"}}},
    {"headers": {"user-agent": {"regex": ".*Firefox.*"}}, "withoutHeaders": {"x-opt-out": {}}},
    {"uri": {"prefix": "/api"}, "method": {"exact": "POST"}},
]


# (method, path, headers) -> who answers while the A/B routes are on
AB_CASES: list[tuple[str, str, dict[str, str], str]] = [
    ("GET", "/", {"x-canary": "insider"}, "canary"),
    ("GET", "/", {"x-canary": "insider-not"}, "primary"),
    ("GET", "/", {"cookie": "canary=always; theme=dark"}, "canary"),
    ("GET", "/", {"cookie": "theme=dark; canary=never"}, "primary"),
    ("GET", "/", {"x-tier": "beta-2"}, "canary"),
    ("GET", "/", {"x-tier": "alpha-beta-2"}, "primary"),
    ("GET", "/", {"x-region": "west-eu"}, "canary"),
    ("GET", "/", {"x-region": "eu-west"}, "primary"),
    ("GET", "/", {"user-agent": "Mozilla/5.0 (X11; rv:120.0) Gecko Firefox/120.0"}, "canary"),
    ("GET", "/", {"user-agent": "Firefox/120.0", "x-opt-out": "1"}, "primary"),
    ("POST", "/api/orders", {}, "canary"),
    ("GET", "/api/orders", {}, "primary"),
    ("POST", "/web", {}, "primary"),
]


async def test_ab_testing_pins_matching_requests_to_canary_while_its_weight_is_positive(harness: Harness) -> None:
    target = harness.target({"interval": "10s", "threshold": 2, "iterations": 5, "match": AB_MATCH})
    await harness.router.reconcile(target)
    with httpx.Client(timeout=5) as client:

        def answers() -> list[str]:
            return [
                client.request(method, apex_url(target, path), headers=headers).text
                for method, path, headers, _ in AB_CASES
            ]

        await harness.route(target, 100, 0)
        assert answers() == ["primary"] * len(AB_CASES)  # no matching request reaches the canary before A/B starts

        await harness.route(target, 0, 100)
        assert answers() == [expected for *_, expected in AB_CASES]
        assert roles(target, 20) == {"primary": 20}  # requests that match nothing stay on the primary
        assert await harness.router.get_routes(target) == Routes(primary_weight=0, canary_weight=100)

        await harness.route(target, 100, 0)
        assert answers() == ["primary"] * len(AB_CASES)


async def test_session_affinity_sticks_clients_to_canary_and_expires_the_cookie_afterwards(harness: Harness) -> None:
    analysis = {
        **CANARY_WEIGHTED,
        "sessionAffinity": {"cookieName": "flagger-cookie", "primaryCookieName": "primary-cookie", "path": "/"},
    }
    target = harness.target(analysis)
    await harness.router.reconcile(target)
    affinity = SessionAffinityRoute(
        cookie_name="flagger-cookie",
        cookie_value="abcdefghij",
        max_age=3600,
        primary_cookie_name="primary-cookie",
        primary_cookie_value="klmnopqrst",
    )
    await harness.route(target, 50, 50, affinity=affinity)

    client = httpx.Client(timeout=5)

    def fetch(cookie: str | None = None) -> httpx.Response:
        client.cookies.clear()  # a cookie jar would make the test's requests sticky by itself
        return client.get(apex_url(target), headers={"cookie": cookie} if cookie else {})

    answers = [fetch() for _ in range(20)]
    assert Counter(answer.text for answer in answers) == {"primary": 10, "canary": 10}
    assert {(answer.text, tuple(answer.headers.get_list("set-cookie"))) for answer in answers} == {
        ("canary", ("flagger-cookie=abcdefghij; Max-Age=3600; Path=/",)),
        ("primary", ("primary-cookie=klmnopqrst; Max-Age=10; Path=/",)),  # Max-Age: the analysis interval
    }
    sticky = [fetch("a=1; flagger-cookie=abcdefghij") for _ in range(20)]
    assert {(answer.text, answer.headers.get("set-cookie")) for answer in sticky} == {("canary", None)}
    pinned = [fetch("primary-cookie=klmnopqrst") for _ in range(20)]
    assert {(answer.text, answer.headers.get("set-cookie")) for answer in pinned} == {("primary", None)}

    expired = affinity.model_copy(update={"cookie_value": "", "previous_cookie": "abcdefghij"})
    await harness.route(target, 100, 0, affinity=expired)

    returning = fetch("flagger-cookie=abcdefghij")
    assert returning.text == "primary"
    assert returning.headers.get_list("set-cookie") == ["flagger-cookie=abcdefghij; Max-Age=-1; Path=/"]
    formerly_pinned = fetch("primary-cookie=klmnopqrst")
    assert (formerly_pinned.text, formerly_pinned.headers.get("set-cookie")) == ("primary", None)
    assert roles(target, 20) == {"primary": 20}
    client.close()


async def test_mirroring_copies_requests_to_canary_while_clients_only_see_primary(harness: Harness) -> None:
    target = harness.target({"interval": "10s", "threshold": 2, "iterations": 5, "mirror": True})
    await harness.router.reconcile(target)
    canary = harness.servers["canary"]
    await harness.route(target, 100, 0, mirrored=True)
    assert await harness.router.get_routes(target) == Routes(primary_weight=100, canary_weight=0, mirrored=True)

    with httpx.Client(timeout=5) as client:
        answers = [client.get(apex_url(target, f"/item/{index}?q=1")) for index in range(10)]
        answers.append(client.post(apex_url(target, "/orders"), content=b'{"id": 7}', headers={"x-trace": "t1"}))
    assert [answer.text for answer in answers] == ["primary"] * 11

    assert wait_for(lambda: len(canary.recorded()) == 11)
    copies = canary.recorded()
    assert sorted(copy.path for copy in copies if copy.method == "GET") == sorted(
        f"/item/{index}?q=1" for index in range(10)
    )
    post = next(copy for copy in copies if copy.method == "POST")
    assert (post.path, post.body, post.headers["x-trace"]) == ("/orders", b'{"id": 7}', "t1")
    local = target.canary.spec.local
    assert local is not None
    metrics = httpx.get(f"http://127.0.0.1:{local.router_metrics_port}/metrics").text
    assert 'haproxy_server_http_responses_total{proxy="mirror",server="canary",code="2xx"} 11' in metrics

    await harness.route(target, 100, 0, mirrored=False)
    assert roles(target, 10) == {"primary": 10}
    time.sleep(0.3)
    assert len(canary.recorded()) == 11


async def test_mirroring_without_analysis_mirror_is_an_invalid_spec(harness: Harness) -> None:
    target = harness.target()
    with pytest.raises(ApplicationError) as invalid:
        await harness.route(target, 100, 0, mirrored=True)
    assert (invalid.value.type, invalid.value.non_retryable) == (ERR_INVALID_SPEC, True)
    assert "analysis.mirror" in str(invalid.value)


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ([{"sourceLabels": {"app": "web"}}], "analysis.match[0].sourceLabels is not supported"),
        ([{"headers": {"x-a": {"exact": "a", "prefix": "b"}}}], "exactly one of exact, prefix, suffix, regex"),
        ([{"headers": {"x-a": {"regex": "(unclosed"}}}], "HAProxy rejects the generated configuration"),
    ],
)
async def test_a_match_haproxy_cannot_express_is_a_non_retryable_invalid_spec(
    harness: Harness, match: list[dict[str, Any]], message: str
) -> None:
    target = harness.target({"interval": "10s", "threshold": 2, "iterations": 5, "match": match})
    with pytest.raises(ApplicationError) as invalid:
        await harness.router.reconcile(target)
    assert (invalid.value.type, invalid.value.non_retryable) == (ERR_INVALID_SPEC, True)
    assert message in str(invalid.value)
    assert running_pid(harness.router.paths(target.canary)) is None


async def test_reconcile_writes_prometheus_targets_and_finalize_stops_haproxy(harness: Harness) -> None:
    target = harness.target()
    local = target.canary.spec.local
    assert local is not None
    await harness.router.reconcile(target)
    paths = harness.router.paths(target.canary)
    master = running_pid(paths)
    assert master is not None

    targets_file = harness.state_dir / "prometheus" / "targets" / "test-demo.json"
    assert json.loads(targets_file.read_text()) == [
        {
            "targets": [f"127.0.0.1:{local.router_metrics_port}"],
            "labels": {"canary": "test/demo", "component": "router"},
        },
        {
            "targets": [f"127.0.0.1:{local.primary_port}"],
            "labels": {"__metrics_path__": "/metrics", "canary": "test/demo", "role": "primary", "component": "app"},
        },
        {
            "targets": [f"127.0.0.1:{local.canary_port}"],
            "labels": {"__metrics_path__": "/metrics", "canary": "test/demo", "role": "canary", "component": "app"},
        },
    ]

    await harness.router.finalize(target)

    assert not Path(f"/proc/{master}").exists()
    assert running_pid(paths) is None
    assert not targets_file.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(apex_url(target))
    assert stop_router(harness.state_dir, "test", "demo") is False


def test_an_app_without_metrics_gets_only_the_router_target() -> None:
    canary = make_canary(18481, 18482, metrics_path="", router_metrics_port=18483)
    assert prometheus_targets(canary) == [
        {"targets": ["127.0.0.1:18483"], "labels": {"canary": "test/demo", "component": "router"}}
    ]
