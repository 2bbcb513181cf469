"""One way to reach the Kubernetes API for every Kubernetes provider: client loading, conflict retries, errors.

The `kubernetes` client is synchronous; providers run their calls in a thread (`run_blocking`) so an activity
never blocks the worker's event loop. Writes follow Flagger's read-modify-write pattern and are wrapped in
`retry_on_conflict`, which re-reads and re-applies on 409 Conflict.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_INVALID_SPEC, ERR_NOT_FOUND
from activities.kube.detect import default_kubeconfig, kube_configured
from canaryflow.settings import Settings

__all__ = ["application_error", "kube_configured", "load_api_client", "retry_on_conflict", "run_blocking"]

ERR_KUBE_FORBIDDEN = "KubernetesForbidden"  # non-retryable: RBAC or credentials are wrong
ERR_KUBE_UNAVAILABLE = "KubernetesUnavailable"  # retryable: API server down, 5xx, 429, timeouts

CONFLICT_ATTEMPTS = 8

T = TypeVar("T")
P = ParamSpec("P")


class KubeConfigMissing(RuntimeError):
    """No kubeconfig and not running in a cluster."""


def load_api_client(settings: Settings | None = None) -> k8s.ApiClient:
    """An ApiClient from settings.kubeconfig, $KUBECONFIG, ~/.kube/config or the in-cluster account."""
    context = settings.kube_context if settings is not None else None
    path = (settings.kubeconfig if settings is not None else None) or default_kubeconfig()
    if path is not None:
        if not Path(path).is_file():
            raise KubeConfigMissing(f"kubeconfig {path} does not exist (set CANARYFLOW_KUBECONFIG or KUBECONFIG)")
        return k8s_config.new_client_from_config(config_file=str(path), context=context)
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException as error:
        raise KubeConfigMissing(
            "no Kubernetes configuration: set CANARYFLOW_KUBECONFIG or KUBECONFIG, or run inside a cluster"
        ) from error
    return k8s.ApiClient(configuration)


async def run_blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a synchronous Kubernetes call off the event loop, mapping API errors to typed activity errors."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ApiException as error:
        raise application_error(error) from None


def is_conflict(error: ApiException) -> bool:
    return bool(error.status == 409 and "AlreadyExists" not in (error.body or ""))


def is_not_found(error: ApiException) -> bool:
    return bool(error.status == 404)


def retry_on_conflict(write: Callable[[], T], *, attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Call `write` (which must read the object afresh each time) until it does not hit a 409 Conflict."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except ApiException as error:
            if not is_conflict(error) or attempt == attempts:
                raise
            time.sleep(min(0.05 * attempt, 0.5))
    raise AssertionError("unreachable")


def application_error(error: ApiException) -> ApplicationError:
    """A Temporal error for an API error: missing objects and invalid writes end the step, outages retry."""
    reason = _status_message(error)
    if error.status == 404:
        return ApplicationError(reason, type=ERR_NOT_FOUND, non_retryable=True)
    if error.status in (400, 415, 422):
        return ApplicationError(reason, type=ERR_INVALID_SPEC, non_retryable=True)
    if error.status in (401, 403):
        return ApplicationError(reason, type=ERR_KUBE_FORBIDDEN, non_retryable=True)
    return ApplicationError(reason, type=ERR_KUBE_UNAVAILABLE)


def status_message(error: ApiException) -> str:
    """The `message` of the API's Status body, else the HTTP reason (never the whole body)."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return (error.reason or "").strip() or "no detail"


def _status_message(error: ApiException) -> str:
    return f"Kubernetes API {error.status} {error.reason}: {status_message(error)}"
