"""Flagger's external metrics provider (MetricTemplate `provider.type: externalmetrics`).

Reads the Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`, served by KEDA, Datadog's cluster
agent, prometheus-adapter...). The query is `<namespace>/<metricName>?labelSelector=<url-encoded selector>`: the
namespace defaults to `default`, the selector to everything. The value is the first item of the returned
ExternalMetricValueList (a Kubernetes quantity such as `1500m`); an empty list means "no values".

The worker's Kubernetes client is used, with the template's overrides as in Flagger: `address` replaces the API
server URL, the secret's optional `token` the credentials, `insecureSkipVerify` the TLS check; 5 s timeout.
`is_online` lists `kube-system/dummy-metric`: any answer but an error means the API is served.
"""

from __future__ import annotations

import copy
import json
import math
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from activities.contracts import MetricQuery
from activities.kube.client import KubeConfigMissing, load_api_client, run_blocking
from activities.metrics.common import (
    describe,
    invalid_spec,
    query_failed,
    query_invalid,
    template_credentials,
    template_of,
    transport_reason,
    unavailable,
)
from activities.metrics.kube_access import kube_api_error, single_attempt_client
from canaryflow.settings import load_settings
from canaryflow.spec import MetricTemplate

PROVIDER = "externalmetrics"
API_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
TIMEOUT_SECONDS = 5.0
QUERY_FORMAT = "<namespace>/<metricName>?labelSelector=<url-encoded label selector>"
_FORBIDDEN_FIX = "check the secret's token or the worker's RBAC (get on external.metrics.k8s.io)"


def parse_external_metrics_query(query: str) -> tuple[str, str, str | None]:
    """`(namespace, metric name, label selector or None)` from Flagger's query format."""
    text = query.strip()
    path, _, raw_params = text.partition("?")
    parts = path.split("/")  # "/metric" is the metric in the default namespace
    if len(parts) > 2:
        raise ValueError(f"too many slashes: expected {QUERY_FORMAT}, got {text!r}")
    namespace, metric = ("default", parts[0]) if len(parts) == 1 else (parts[0] or "default", parts[1])
    if not metric:
        raise ValueError(f"the metric name is empty: expected {QUERY_FORMAT}, got {text!r}")
    selector = None
    for param in raw_params.split("&") if raw_params else []:
        key, _, value = param.partition("=")
        if key == "labelSelector":
            selector = unquote(value.replace("+", " ")) or None
    return namespace, metric, selector


class ExternalMetricsProvider:
    def __init__(self, api_client: k8s.ApiClient | None = None, *, timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self._api_client = single_attempt_client(api_client) if api_client is not None else None
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        template = template_of(query, PROVIDER)
        try:
            namespace, metric, selector = parse_external_metrics_query(rendered)
        except ValueError as error:
            raise query_invalid(f"{PROVIDER} {describe(template)}: {error}") from None
        client = self._client_for(template)
        body = await run_blocking(self._list, client, template, namespace, metric, selector)
        return _first_value(body, describe(template), f"{namespace}/{metric}")

    async def is_online(self, query: MetricQuery) -> bool:
        template = template_of(query, PROVIDER)
        client = self._client_for(template)
        await run_blocking(self._list, client, template, "kube-system", "dummy-metric", None)
        return True

    def _base_client(self, template: MetricTemplate) -> k8s.ApiClient:
        if self._api_client is None:
            try:
                self._api_client = single_attempt_client(load_api_client(load_settings()))
            except KubeConfigMissing as error:  # only a template with an address can still be served
                if template.spec.provider.address:
                    return single_attempt_client(k8s.ApiClient(k8s.Configuration()))
                raise invalid_spec(
                    f"{PROVIDER} {describe(template)}: no Kubernetes configuration ({error}); "
                    "set spec.provider.address or give the worker a kubeconfig"
                ) from None
        return self._api_client

    def _client_for(self, template: MetricTemplate) -> k8s.ApiClient:
        base = self._base_client(template)
        settings = template.spec.provider
        secret = template_credentials(template, PROVIDER, (), secret_required=False)
        if not settings.address and "token" not in secret and not settings.insecure_skip_verify:
            return base
        configuration = copy.deepcopy(base.configuration)
        if settings.address:
            parts = urlsplit(settings.address)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise invalid_spec(f"{describe(template)} provider.address {settings.address!r} is not an http(s) URL")
            configuration.host = settings.address.rstrip("/")
        if "token" in secret:
            # kubernetes 36 reads `BearerToken` (prefix included), as its kubeconfig loader stores it.
            configuration.api_key = {"BearerToken": f"Bearer {secret['token']}"}
            configuration.refresh_api_key_hook = None  # the kubeconfig's own token must not replace it
        if settings.insecure_skip_verify:
            configuration.verify_ssl = False
        return k8s.ApiClient(configuration)

    def _list(
        self, client: k8s.ApiClient, template: MetricTemplate, namespace: str, metric: str, selector: str | None
    ) -> Any:
        where = describe(template)
        host = client.configuration.host
        query_params = [("labelSelector", selector)] if selector else []
        try:
            response = client.call_api(
                API_PATH,
                "GET",
                path_params={"namespace": namespace, "metric": metric},
                query_params=query_params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self.timeout_seconds,
            )
        except ApiException as error:
            raise kube_api_error(error, f"external metric {namespace}/{metric}", where, _FORBIDDEN_FIX) from None
        except urllib3.exceptions.HTTPError as error:
            raise unavailable(
                f"cannot reach the external metrics API at {host} ({where}): {transport_reason(error)}"
            ) from None
        raw = response[0] if isinstance(response, tuple) else response
        try:
            return json.loads(raw.data)
        except ValueError:
            raise query_failed(
                f"{host} did not answer like the external metrics API ({where}); check spec.provider.address"
            ) from None


def _first_value(body: Any, where: str, metric: str) -> float | None:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise query_failed(f"the external metrics API answered {metric} without an items list ({where})")
    if not items:
        return None
    first = items[0]
    raw = first.get("value") if isinstance(first, dict) else None
    try:
        value = float(parse_quantity(raw)) if isinstance(raw, str | int | float | Decimal) else None
    except ValueError:
        value = None
    if value is None:
        raise query_failed(f"the external metrics API answered {metric} with the value {raw!r}, not a quantity")
    return None if math.isnan(value) else value
