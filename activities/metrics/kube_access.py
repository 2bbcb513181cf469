"""Kubernetes API access shared by the metric providers that read the cluster (keptn, externalmetrics)."""

from __future__ import annotations

import copy

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError

from activities.kube.client import status_message
from activities.metrics.common import auth_failed, query_failed, query_invalid, unavailable


def single_attempt_client(api_client: k8s.ApiClient) -> k8s.ApiClient:
    """A client on a copy of `api_client`'s configuration that does not retry: urllib3's default three retries
    would turn a 5 s timeout into 20 s, and retrying is the activity's retry policy's job."""
    configuration = copy.deepcopy(api_client.configuration)
    configuration.retries = False
    return k8s.ApiClient(configuration)


def kube_api_error(error: ApiException, what: str, where: str, forbidden_fix: str) -> ApplicationError:
    """A typed metric error for an API error answering `what`, asked for by `where` (the MetricTemplate)."""
    detail = status_message(error)
    status = error.status or 0
    if status in (401, 403):
        return auth_failed(f"the Kubernetes API refused {what} for {where} (HTTP {status}: {detail}); {forbidden_fix}")
    if status == 404:
        return query_failed(f"{what} does not exist ({where}): {detail}; check the query's namespace and name")
    if status in (400, 422):
        return query_invalid(f"the Kubernetes API rejected {what} ({where}): {detail}")
    if status in (408, 429) or status >= 500:
        return unavailable(f"the Kubernetes API answered HTTP {status} for {what} ({where}): {detail}")
    return query_failed(f"the Kubernetes API answered HTTP {status} for {what} ({where}): {detail}")
