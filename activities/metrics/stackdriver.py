"""Flagger's Stackdriver metric provider (MetricTemplate `provider.type: stackdriver`): Google Cloud Monitoring.

The query is MQL, run with Cloud Monitoring's `QueryService.QueryTimeSeries` (gRPC, google-cloud-monitoring) in the
project named by the secret's `project` key; the MQL sets its own window (`| within 5m`). The value is the first
value of the first point of the first time series, as in Flagger (a double, or an int64 turned into a float; no
series or no point means "no values").

Credentials, from the template's secretRef as in Flagger: `project` (required) and an optional `serviceAccountKey`
(a service-account JSON key); without the key, Application Default Credentials (Workload Identity, gcloud).
`spec.provider.address` (not in Flagger) points the client elsewhere: `host:port` or `https://host` over TLS, and
`http://127.0.0.1:port` over gRPC's local-connection credentials, for an emulator on the same machine.
`is_online` runs an empty query: an "invalid argument" answer means the API and the credentials work.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]  # no types-grpcio in the dev dependencies
from google.api_core import exceptions as api_exceptions
from google.auth import default as default_credentials
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import Credentials
from google.auth.transport.grpc import AuthMetadataPlugin
from google.auth.transport.requests import Request
from google.cloud.monitoring_v3 import QueryServiceClient, TypedValue
from google.cloud.monitoring_v3.services.query_service.transports.grpc import QueryServiceGrpcTransport
from google.oauth2 import service_account
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_METRIC_QUERY_INVALID, MetricQuery
from activities.metrics.common import (
    auth_failed,
    describe,
    invalid_spec,
    query_failed,
    query_invalid,
    template_credentials,
    template_of,
    unavailable,
)
from canaryflow.spec import MetricTemplate

PROVIDER = "stackdriver"
MONITORING_READ_SCOPE = "https://www.googleapis.com/auth/monitoring.read"
TIMEOUT_SECONDS = 5.0

_UNAVAILABLE = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.TooManyRequests,
    api_exceptions.ResourceExhausted,
    api_exceptions.Aborted,
    api_exceptions.Unknown,
)


class StackdriverProvider:
    def __init__(self, *, timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        return await asyncio.to_thread(self._run_blocking, template_of(query, PROVIDER), rendered)

    async def is_online(self, query: MetricQuery) -> bool:
        template = template_of(query, PROVIDER)
        try:
            await asyncio.to_thread(self._run_blocking, template, "")
        except ApplicationError as error:
            if error.type != ERR_METRIC_QUERY_INVALID:
                raise
        return True  # answered, if only to reject the empty query: reachable and authorized

    def _run_blocking(self, template: MetricTemplate, mql: str) -> float | None:
        where = describe(template)
        secret = template_credentials(template, PROVIDER, ("project",), secret_required=True)
        google_credentials = _google_credentials(secret, where)
        client = _client(template, google_credentials, where)
        try:
            if not google_credentials.valid:
                # Fetched here, not inside the gRPC auth plugin, which would report a refused key as UNAVAILABLE.
                google_credentials.refresh(Request())  # type: ignore[no-untyped-call]
            pager = client.query_time_series(
                request={"name": f"projects/{secret['project']}", "query": mql},
                timeout=self.timeout_seconds,
                retry=None,  # retries belong to the activity's retry policy
            )
            first = next(iter(pager), None)
        except api_exceptions.GoogleAPICallError as error:
            raise _call_error(error, where, mql) from None
        except auth_exceptions.RefreshError as error:
            raise auth_failed(
                f"Cloud Monitoring: {where} could not get an access token ({error}); check the key"
            ) from None
        except auth_exceptions.TransportError as error:
            raise unavailable(f"Cloud Monitoring: {where} could not reach the token endpoint: {error}") from None
        finally:
            client.transport.close()  # type: ignore[no-untyped-call]
        return None if first is None else _first_value(first, where)


def _google_credentials(secret: dict[str, str], where: str) -> Credentials:
    key = secret.get("serviceAccountKey")
    try:
        if key:
            info = json.loads(key)
            key_credentials: Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[MONITORING_READ_SCOPE]
            )
            return key_credentials
        found, _ = default_credentials(scopes=[MONITORING_READ_SCOPE])
        return found
    except (ValueError, KeyError, TypeError):
        raise auth_failed(
            f"stackdriver {where}: the secret's serviceAccountKey is not a service-account JSON key; "
            "paste the key file's JSON"
        ) from None
    except auth_exceptions.DefaultCredentialsError:
        raise auth_failed(
            f"stackdriver {where}: the secret has no serviceAccountKey and no Application Default Credentials "
            "are available; add serviceAccountKey or set up Workload Identity"
        ) from None


def _client(template: MetricTemplate, google_credentials: Credentials, where: str) -> QueryServiceClient:
    address = (template.spec.provider.address or "").strip()
    if not address:
        return QueryServiceClient(credentials=google_credentials)
    parts = urlsplit(address if "://" in address else f"https://{address}")
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise invalid_spec(f"stackdriver {where}: provider.address {address!r} is not host:port or an http(s) URL")
    target = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if parts.scheme == "https":
        return QueryServiceClient(credentials=google_credentials, client_options={"api_endpoint": target})
    # Plain http: gRPC's local-connection credentials, which carry the access token but only to this machine.
    plugin = AuthMetadataPlugin(google_credentials, Request())  # type: ignore[no-untyped-call]
    call_credentials = grpc.metadata_call_credentials(plugin)
    local = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    channel = grpc.secure_channel(target, grpc.composite_channel_credentials(local, call_credentials))
    return QueryServiceClient(transport=QueryServiceGrpcTransport(channel=channel))


def _first_value(series: Any, where: str) -> float | None:
    if not series.point_data or not series.point_data[0].values:
        return None
    typed = series.point_data[0].values[0]
    kind = TypedValue.pb(typed).WhichOneof("value")
    if kind == "double_value":
        value = float(typed.double_value)
    elif kind == "int64_value":
        value = float(typed.int64_value)
    else:
        raise query_failed(
            f"Cloud Monitoring returned a {kind or 'empty'} value for {where}; the MQL must produce a number"
        )
    return None if math.isnan(value) else value


def _call_error(error: api_exceptions.GoogleAPICallError, where: str, mql: str) -> ApplicationError:
    detail = error.message or type(error).__name__
    if isinstance(error, api_exceptions.Unauthenticated | api_exceptions.PermissionDenied):
        return auth_failed(
            f"Cloud Monitoring refused {where} ({type(error).__name__}: {detail}); "
            "check the service account's roles/monitoring.viewer and the secret's project"
        )
    if isinstance(error, api_exceptions.InvalidArgument):
        return query_invalid(f"Cloud Monitoring rejected the MQL of {where} ({detail}): {mql}")
    if isinstance(error, _UNAVAILABLE):
        return unavailable(f"Cloud Monitoring did not answer {where} ({type(error).__name__}: {detail})")
    return query_failed(f"Cloud Monitoring answered {where} with {type(error).__name__}: {detail}")
