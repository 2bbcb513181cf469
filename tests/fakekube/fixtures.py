"""Pytest fixtures: one server per session, reset per test with the fixture CRDs and a ready-mode Kubelet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake import FakeKube
from .kubelet import Kubelet

TEST_NAMESPACE = "test"


@pytest.fixture(scope="session")
def fake_kube_server() -> Iterator[FakeKube]:
    fake = FakeKube()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_kube(fake_kube_server: FakeKube) -> Iterator[FakeKube]:
    """A clean server: namespaces default, kube-system and test, every fixture CRD, `fake_kube.kubelet` ready."""
    fake_kube_server.reset()
    fake_kube_server.register_fixture_crds()
    fake_kube_server.create_namespace(TEST_NAMESPACE)
    Kubelet(fake_kube_server, "ready")
    yield fake_kube_server
