"""Kubernetes API stand-ins: the external metrics API and Keptn's `metrics.keptn.sh` custom resources.

Both answer like an API server: JSON objects, `Status` bodies for errors, bearer-token authentication.

- External metrics: `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>?labelSelector=` answers an
  ExternalMetricValueList of the items in `metrics[(ns, metric)]` whose labels match the (equality-based) selector.
- Keptn: KeptnMetrics are read (`keptn_metrics[(ns, name)]`); Analyses are created, read and deleted. A stand-in
  Keptn controller completes each new Analysis after `analysis_seconds` with `analysis_passes` (None: never).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from kubernetes import client as k8s

KEPTN = "/apis/metrics.keptn.sh/v1beta1/namespaces/{namespace}"
WORKER_TOKEN = "worker-service-account-token"


def api_client(host: str, token: str = WORKER_TOKEN) -> k8s.ApiClient:
    """A kubernetes ApiClient for the stand-in at `host`, authenticated as the worker."""
    configuration = k8s.Configuration(host=host)
    configuration.api_key = {"BearerToken": f"Bearer {token}"}  # as kubernetes' kubeconfig loader stores it
    return k8s.ApiClient(configuration)


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    return web.json_response(body | {"reason": reason, "code": code}, status=code)


@dataclass
class KubeApiStandIn:
    token: str
    metrics: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    keptn_metrics: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    analyses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deleted_analyses: list[str] = field(default_factory=list)
    analysis_seconds: float = 0.05
    analysis_passes: bool | None = True
    delay_seconds: float = 0.0
    malformed: bool = False
    selectors: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}", self._external)
        app.router.add_get(KEPTN + "/keptnmetrics/{name}", self._keptn_metric)
        app.router.add_post(KEPTN + "/analyses", self._create_analysis)
        app.router.add_get(KEPTN + "/analyses/{name}", self._get_analysis)
        app.router.add_delete(KEPTN + "/analyses/{name}", self._delete_analysis)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        if self.malformed:
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        response: web.StreamResponse = await handler(request)
        return response

    async def _external(self, request: web.Request) -> web.Response:
        namespace, metric = request.match_info["namespace"], request.match_info["metric"]
        selector = request.query.get("labelSelector", "")
        self.selectors.append(selector)
        if (namespace, metric) not in self.metrics:
            return status(404, "NotFound", f'the server could not find the metric {metric} for namespace "{namespace}"')
        try:
            wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        except ValueError:
            return status(400, "BadRequest", f"unable to parse requirement: {selector}")
        items = [
            item
            for item in self.metrics[(namespace, metric)]
            if all(item["metricLabels"].get(key) == value for key, value in wanted.items())
        ]
        return web.json_response(
            {"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {}}
            | {"items": items}
        )

    async def _keptn_metric(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.keptn_metrics:
            return status(404, "NotFound", f'keptnmetrics.metrics.keptn.sh "{key[1]}" not found')
        return web.json_response(self.keptn_metrics[key])

    async def _create_analysis(self, request: web.Request) -> web.Response:
        body = await request.json()
        namespace = request.match_info["namespace"]
        name = body["metadata"]["name"]
        body["metadata"] |= {"namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"}
        self.analyses[(namespace, name)] = body
        if self.analysis_passes is not None:
            asyncio.get_running_loop().call_later(self.analysis_seconds, self._complete, namespace, name)
        return web.json_response(body, status=201)

    def _complete(self, namespace: str, name: str) -> None:
        if (namespace, name) in self.analyses:
            self.analyses[(namespace, name)]["status"] = {"state": "Completed", "pass": self.analysis_passes}

    async def _get_analysis(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.analyses:
            return status(404, "NotFound", f'analyses.metrics.keptn.sh "{key[1]}" not found')
        return web.json_response(self.analyses[key])

    async def _delete_analysis(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        if self.analyses.pop(key, None) is None:
            return status(404, "NotFound", f'analyses.metrics.keptn.sh "{key[1]}" not found')
        self.deleted_analyses.append(key[1])
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})


def external_metric(name: str, value: str, **labels: str) -> dict[str, Any]:
    return {"metricName": name, "metricLabels": labels, "timestamp": "2026-11-22T03:00:00Z", "value": value}


def keptn_metric(namespace: str, name: str, value: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "metrics.keptn.sh/v1beta1",
        "kind": "KeptnMetric",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": {"name": "prometheus"}, "query": "sum(rate(errors[1m]))", "fetchIntervalSeconds": 10},
    }
    if value is not None:
        body["status"] = {"value": value, "rawValue": "MC4y", "lastUpdated": "2026-11-22T03:00:00Z"}
    return body
