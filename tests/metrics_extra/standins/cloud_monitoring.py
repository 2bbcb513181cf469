"""Google Cloud stand-ins: Cloud Monitoring's `QueryService.QueryTimeSeries` over gRPC, and an OAuth token endpoint.

`MonitoringStandIn` serves the real gRPC method (protobuf messages of google-cloud-monitoring) on 127.0.0.1 with
gRPC's local-connection credentials. It accepts only `Authorization: Bearer <access_token>`, only project
`project`, and answers the MQL queries in `results` (time series data, as dicts); any other query is an
INVALID_ARGUMENT, as Cloud Monitoring answers an MQL syntax error. `delay_seconds` slows every answer,
`garbage` answers bytes that are not a QueryTimeSeriesResponse.

`TokenEndpoint` is the `token_uri` of a service-account key: it verifies the JWT-bearer assertion's signature
against the key's public half and answers an access token (RFC 7523), or `invalid_grant`.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt
from google.cloud.monitoring_v3.types import metric_service

SERVICE = "google.monitoring.v3.QueryService"
# Service-account assertions name Google's token endpoint as audience, whatever the key's token_uri.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class MonitoringStandIn:
    access_token: str
    project: str
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    delay_seconds: float = 0.0
    garbage: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        method = grpc.unary_unary_rpc_method_handler(
            self._query_time_series,
            request_deserializer=metric_service.QueryTimeSeriesRequest.deserialize,
            response_serializer=_serialize,
        )
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"QueryTimeSeries": method})]
        )
        local = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        self.port = self._server.add_secure_port("127.0.0.1:0", local)
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MonitoringStandIn:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    def _query_time_series(self, request: Any, context: Any) -> Any:
        with self._lock:
            self.requests.append((request.name, request.query))
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {self.access_token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
        if request.name != f"projects/{self.project}":
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "Permission monitoring.timeSeries.list denied (or the resource may not exist).",
            )
        if request.query not in self.results:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Line 1, column 1: Syntax error at 'x'.")
        if self.garbage:
            return b"\xff\xff\xff\xff not a protobuf"
        return metric_service.QueryTimeSeriesResponse(
            time_series_descriptor={"point_descriptors": [{"key": "value.ratio", "value_type": "DOUBLE"}]},
            time_series_data=self.results[request.query],
        )


def _serialize(response: Any) -> bytes:
    if isinstance(response, bytes):
        return response
    return bytes(metric_service.QueryTimeSeriesResponse.serialize(response))


def series(*values: dict[str, Any]) -> dict[str, Any]:
    """One TimeSeriesData whose points each hold one typed value, newest first (as Cloud Monitoring orders them)."""
    interval = {"start_time": "2026-11-22T03:00:00Z", "end_time": "2026-11-22T03:01:00Z"}
    return {
        "label_values": [{"string_value": "podinfo"}],
        "point_data": [{"values": [value], "time_interval": interval} for value in values],
    }


class TokenEndpoint:
    """An OAuth 2.0 token endpoint for one service account key (the key pair is made here)."""

    def __init__(self, access_token: str, client_email: str = "flagger@shop-prod.iam.gserviceaccount.com") -> None:
        self.access_token = access_token
        self.client_email = client_email
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.grants: list[dict[str, Any]] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        return app

    def service_account_key(self, project: str) -> str:
        """The JSON key file Google hands out, pointing its token_uri here."""
        private_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "0123456789abcdef",
                "private_key": private_pem,
                "client_email": self.client_email,
                "client_id": "1234567890",
                "token_uri": f"{self.url}/token",
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            claims = jwt.decode(  # type: ignore[no-untyped-call]
                str(form.get("assertion", "")), certs=public_pem.decode(), audience=GOOGLE_TOKEN_AUDIENCE
            )
        except ValueError:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
            )
        self.grants.append({"grant_type": form.get("grant_type"), **claims})
        return web.json_response({"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"})
