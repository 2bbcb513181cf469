"""Shared test helpers and Temporal environments.

- `free_port()`: a free TCP port on 127.0.0.1 (servers in tests never use Temporal's default 7233/8233).
- `temporal_bin()` / `temporal_test_server_bin()`: paths of the dev-server CLI and the Java test server.
- `time_skipping_env` (session): the time-skipping test server, for workflow tests; timers complete instantly.
  Our search attributes are registered on it.
- `dev_env` (session): a real in-memory dev server with canaryflow's search attributes, for integration tests.
  Its address is `dev_env.client.service_client.config.target_host`.
Both environments use the pydantic data converter, like the product does. Use a fresh task queue per test
(`f"test-{uuid.uuid4()}"`) so tests sharing an environment don't steal each other's tasks.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.secrets import SECRETS_DIR_ENV
from canaryflow.devserver import ensure_search_attributes
from canaryflow.shared import SEARCH_ATTRIBUTES


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that `activities.secrets.read_secret` reads secrets from."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setenv(SECRETS_DIR_ENV, str(directory))
    return directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary(name: str) -> str:
    beside_python = Path(sys.executable).parent / name  # the project's .venv/bin
    if beside_python.is_file():
        return str(beside_python)
    if found := shutil.which(name):
        return found
    raise RuntimeError(f"{name} not found in {beside_python.parent} or on PATH; run `uv sync`")


def temporal_bin() -> str:
    return _binary("temporal")


def temporal_test_server_bin() -> str:
    return _binary("temporal-test-server")


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_bin(), data_converter=pydantic_data_converter
    )
    # Like a real cluster, the test server knows no custom search attributes until they are registered.
    await ensure_search_attributes(env.client, env.client.namespace, SEARCH_ATTRIBUTES)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(),
        port=free_port(),
        ui=False,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()
