"""Flagger's Keptn metric provider (MetricTemplate `provider.type: keptn`), through the Kubernetes API.

The query selects a `metrics.keptn.sh/v1beta1` resource: `<keptnmetric|analysis>/<namespace>/<name>[/<timeframe>
[/<key>=<value>;...]]` (plural resource names are accepted too). As in Flagger the whole query is lower-cased.

- `keptnmetric/<namespace>/<name>`: the KeptnMetric's `status.value` (a number written as a string); a KeptnMetric
  that has no value yet means "no values".
- `analysis/<namespace>/<AnalysisDefinition>/<timeframe>/<args>`: creates an Analysis of that definition over the
  recent `timeframe` (default `1m`) with the arguments, polls it every second until Keptn marks it `Completed`
  (at most 10 s), deletes it, and returns 1 when it passed, 0 when it failed.

`is_online` is always true, as in Flagger: the Keptn operator's health is not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from activities.contracts import MetricQuery
from activities.kube.client import KubeConfigMissing, load_api_client, run_blocking
from activities.metrics.common import (
    describe,
    invalid_spec,
    query_failed,
    query_invalid,
    template_of,
    transport_reason,
    unavailable,
)
from activities.metrics.kube_access import kube_api_error, single_attempt_client
from canaryflow.settings import load_settings

PROVIDER = "keptn"
GROUP = "metrics.keptn.sh"
VERSION = "v1beta1"
KEPTN_METRICS = "keptnmetrics"
ANALYSES = "analyses"
DEFAULT_TIMEFRAME = "1m"
QUERY_FORMAT = "<keptnmetric|analysis>/<namespace>/<name>/<timeframe>/<key>=<value>;..."
REQUEST_TIMEOUT_SECONDS = 5.0
_FORBIDDEN_FIX = f"grant the worker get, create and delete on {GROUP} keptnmetrics and analyses"


@dataclass(frozen=True)
class KeptnQuery:
    resource: str  # KEPTN_METRICS or ANALYSES
    namespace: str
    name: str
    timeframe: str = DEFAULT_TIMEFRAME
    arguments: dict[str, str] = field(default_factory=dict)


def parse_keptn_query(query: str) -> KeptnQuery:
    parts = query.lower().strip().split("/")
    if len(parts) < 3:
        raise ValueError(f"expected {QUERY_FORMAT}, got {query.strip()!r}")
    kind, namespace, name = parts[0], parts[1], parts[2]
    if kind in ("keptnmetric", KEPTN_METRICS):
        return KeptnQuery(KEPTN_METRICS, namespace, name)
    if kind in ("analysis", ANALYSES):
        timeframe = parts[3] if len(parts) >= 4 else DEFAULT_TIMEFRAME
        arguments: dict[str, str] = {}
        if len(parts) >= 5:
            for pair in parts[4].split(";"):
                key_value = pair.split("=")
                if len(key_value) == 2:  # Flagger skips anything else
                    arguments[key_value[0]] = key_value[1]
        return KeptnQuery(ANALYSES, namespace, name, timeframe, arguments)
    raise ValueError(f"the resource kind must be keptnmetric or analysis, got {parts[0]!r}")


class KeptnProvider:
    def __init__(
        self,
        api_client: k8s.ApiClient | None = None,
        *,
        poll_interval_seconds: float = 1.0,
        analysis_timeout_seconds: float = 10.0,
        request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._api_client = single_attempt_client(api_client) if api_client is not None else None
        self.poll_interval_seconds = poll_interval_seconds
        self.analysis_timeout_seconds = analysis_timeout_seconds
        self.request_timeout_seconds = request_timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        where = describe(template_of(query, PROVIDER))
        try:
            selected = parse_keptn_query(rendered)
        except ValueError as error:
            raise query_invalid(f"keptn {where}: {error}") from None
        api = _KeptnApi(k8s.CustomObjectsApi(self._client(where)), selected, where, self.request_timeout_seconds)
        if selected.resource == KEPTN_METRICS:
            return await run_blocking(api.keptn_metric_value)
        return await self._analysis_result(api)

    async def is_online(self, query: MetricQuery) -> bool:
        return True

    def _client(self, where: str) -> k8s.ApiClient:
        if self._api_client is None:
            try:
                self._api_client = single_attempt_client(load_api_client(load_settings()))
            except KubeConfigMissing as error:
                raise invalid_spec(f"keptn {where} reads the cluster's Keptn resources: {error}") from None
        return self._api_client

    async def _analysis_result(self, api: _KeptnApi) -> float:
        name = await run_blocking(api.create_analysis)
        what = f"Keptn Analysis {api.selected.namespace}/{name} (definition {api.selected.name})"
        try:
            deadline = time.monotonic() + self.analysis_timeout_seconds
            while True:
                await asyncio.sleep(self.poll_interval_seconds)
                if time.monotonic() > deadline:
                    raise unavailable(
                        f"{what} for {api.where} did not complete within {self.analysis_timeout_seconds:g}s; "
                        "check that the Keptn metrics operator runs and the AnalysisDefinition exists"
                    )
                status = (await run_blocking(api.get, name, what)).get("status")
                if isinstance(status, dict) and status.get("state") == "Completed" and "pass" in status:
                    return 1.0 if status["pass"] is True else 0.0
        finally:
            with contextlib.suppress(ApplicationError):  # as in Flagger, a leftover Analysis is no metric failure
                await run_blocking(api.delete, name, what)


@dataclass(frozen=True)
class _KeptnApi:
    """Blocking calls for one query's resources; every failure is a typed metric error."""

    api: k8s.CustomObjectsApi
    selected: KeptnQuery
    where: str  # the MetricTemplate, for messages
    timeout_seconds: float

    def keptn_metric_value(self) -> float | None:
        what = f"KeptnMetric {self.selected.namespace}/{self.selected.name}"
        status = self.get(self.selected.name, what).get("status")
        value = status.get("value") if isinstance(status, dict) else None
        if value is None or value == "":
            return None  # Keptn has not fetched a value yet
        try:
            return float(value)
        except (TypeError, ValueError):
            raise query_failed(f"{what} has the status.value {value!r}, not a number ({self.where})") from None

    def create_analysis(self) -> str:
        selected = self.selected
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Analysis",
            "metadata": {"name": f"{selected.name}-{uuid.uuid4().hex[:6]}", "namespace": selected.namespace},
            "spec": {
                "analysisDefinition": {"name": selected.name},
                "timeframe": {"recent": selected.timeframe},
                "args": selected.arguments,
            },
        }
        what = f"Keptn Analysis of definition {selected.namespace}/{selected.name}"
        created = self._call(
            self.api.create_namespaced_custom_object, what, GROUP, VERSION, selected.namespace, ANALYSES, body
        )
        return str(created.get("metadata", {}).get("name") or body["metadata"]["name"])  # type: ignore[index]

    def get(self, name: str, what: str) -> dict[str, Any]:
        return self._call(self.api.get_namespaced_custom_object, what, *self._at(name))

    def delete(self, name: str, what: str) -> None:
        self._call(self.api.delete_namespaced_custom_object, what, *self._at(name))

    def _at(self, name: str) -> tuple[str, str, str, str, str]:
        return GROUP, VERSION, self.selected.namespace, self.selected.resource, name

    def _call(self, method: Any, what: str, *args: Any) -> dict[str, Any]:
        try:
            result = method(*args, _request_timeout=self.timeout_seconds)
        except ApiException as error:
            raise kube_api_error(error, what, self.where, _FORBIDDEN_FIX) from None
        except urllib3.exceptions.HTTPError as error:
            raise unavailable(
                f"cannot reach the Kubernetes API for {what} ({self.where}): {transport_reason(error)}"
            ) from None
        if not isinstance(result, dict):
            # The client hands back the raw text when the body is not JSON: not the Kubernetes API answering.
            raise query_failed(
                f"the Kubernetes API answered {what} with something that is not a JSON object ({self.where})"
            )
        return result
