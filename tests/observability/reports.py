"""StatusReport builders and Prometheus exposition readers for the observability tests."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from activities.contracts import StatusReport

STARTED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def report(**changes: Any) -> StatusReport:
    values: dict[str, Any] = {
        "workflow_id": "canary/test/podinfo",
        "canary_api_version": "flagger.app/v1beta1",
        "name": "podinfo-canary",
        "namespace": "test",
        "target_kind": "Deployment",
        "target_name": "podinfo",
        "provider": "kubernetes",
        "platform": "kubernetes",
        "revision": "rev-2",
        "phase": "Progressing",
        "primary_weight": 90,
        "canary_weight": 10,
        "iterations": 1,
        "failed_checks": 0,
        "threshold": 5,
        "started_at": STARTED,
        "last_transition_time": STARTED + timedelta(seconds=30),
        "sequence": 1,
    }
    values.update(changes)
    return StatusReport.model_validate(values)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (sample name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(registry: CollectorRegistry) -> Samples:
    return parse_exposition(generate_latest(registry).decode())


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples called `name`, by their labels."""
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def get(url: str, timeout: float = 5) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET that bypasses any proxy configured in the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()
