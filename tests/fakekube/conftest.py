"""fakekube's own tests: the shared fixtures plus typed clients on a fresh ApiClient per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client

from tests.fakekube.fake import FakeKube
from tests.fakekube.fixtures import fake_kube, fake_kube_server  # noqa: F401


@dataclass
class Clients:
    api: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api
    autoscaling: client.AutoscalingV2Api
    custom: client.CustomObjectsApi
    extensions: client.ApiextensionsV1Api


@pytest.fixture
def kube(fake_kube: FakeKube) -> Iterator[Clients]:  # noqa: F811 - the fixture imported above
    api = fake_kube.api_client()
    yield Clients(
        api,
        client.CoreV1Api(api),
        client.AppsV1Api(api),
        client.AutoscalingV2Api(api),
        client.CustomObjectsApi(api),
        client.ApiextensionsV1Api(api),
    )
    api.close()
