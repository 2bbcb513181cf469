from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from activities import webhooks
from tests.helpers.http_receiver import HttpReceiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as running:
        yield running


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Flagger's backoff shape but shrink its base so retries don't sleep whole seconds."""
    monkeypatch.setattr(webhooks, "RETRY_WAIT_MIN_SECONDS", 0.01)


@pytest.fixture
def closed_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
