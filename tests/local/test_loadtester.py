"""The load tester answers Flagger's webhook payloads like Flagger's loadtester does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from workers.loadtester import LoadTester, serve


@pytest.fixture
def tester() -> Iterator[tuple[str, LoadTester]]:
    lt = LoadTester(command_timeout=5)
    server = serve("127.0.0.1", 0, lt)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", lt
    finally:
        server.shutdown()
        server.server_close()
        lt.stop_all()


def payload(cmd: str = "", kind: str = "cmd", **extra: str) -> dict[str, object]:
    metadata = {"type": kind, **extra}
    if cmd:
        metadata["cmd"] = cmd
    return {"name": "web", "namespace": "prod", "phase": "Progressing", "checksum": "x", "metadata": metadata}


def test_cmd_runs_async_once_per_canary_and_command(tester: tuple[str, LoadTester], tmp_path: Path) -> None:
    url, _ = tester
    marker = tmp_path / "runs"
    command = f"echo run >> {marker}; sleep 2"
    first = httpx.post(url + "/", json=payload(command))
    second = httpx.post(url + "/", json=payload(command))
    assert (first.status_code, first.text) == (202, "started")
    assert (second.status_code, second.text) == (202, "already running")
    time.sleep(0.5)
    assert marker.read_text().count("run") == 1


def test_bash_blocks_and_reports_failure_output(tester: tuple[str, LoadTester]) -> None:
    url, _ = tester
    ok = httpx.post(url + "/", json=payload("echo fine", "bash", returnCmdOutput="true"))
    bad = httpx.post(url + "/", json=payload("echo broken >&2; exit 3", "bash"))
    assert (ok.status_code, ok.text.strip()) == (200, "fine")
    assert bad.status_code == 500 and "broken" in bad.text


def test_missing_command_and_bad_json_are_400(tester: tuple[str, LoadTester]) -> None:
    url, _ = tester
    assert httpx.post(url + "/", json=payload()).status_code == 400
    assert httpx.post(url + "/", content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 400


def test_gates_follow_flaggers_endpoints(tester: tuple[str, LoadTester]) -> None:
    url, _ = tester
    body = payload()
    assert httpx.post(url + "/gate/approve", json=body).status_code == 200
    assert httpx.post(url + "/gate/halt", json=body).status_code == 403
    assert httpx.post(url + "/gate/check", json=body).status_code == 403
    assert httpx.post(url + "/gate/open", json=body).status_code == 200
    assert httpx.post(url + "/gate/check", json=body).status_code == 200
    assert httpx.post(url + "/rollback/check", json=body).status_code == 403
    assert httpx.post(url + "/rollback/open", json=body).status_code == 200
    assert httpx.post(url + "/rollback/check", json=body).status_code == 200
    assert httpx.post(url + "/gate/close", json=body).status_code == 200
    assert httpx.post(url + "/gate/check", json=body).status_code == 403
