"""The one way canaryflow connects to Temporal: same converter, TLS and credentials everywhere."""

from __future__ import annotations

import re
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from canaryflow.settings import Settings

CONNECT_TIMEOUT = timedelta(seconds=10)


class TemporalUnavailable(Exception):
    """The Temporal frontend cannot be reached; the message is one line naming the address."""


def tls_config(settings: Settings) -> TLSConfig | bool:
    """False for plaintext, True for TLS with system roots, or a TLSConfig carrying certificates."""
    if not settings.temporal_tls:
        return False
    paths = (
        settings.temporal_tls_client_cert_path,
        settings.temporal_tls_client_key_path,
        settings.temporal_tls_server_ca_cert_path,
    )
    if not any(paths) and settings.temporal_tls_server_name is None:
        return True
    if (settings.temporal_tls_client_cert_path is None) != (settings.temporal_tls_client_key_path is None):
        raise ValueError("set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH together")
    cert, key, ca = (path.read_bytes() if path is not None else None for path in paths)
    return TLSConfig(
        client_cert=cert,
        client_private_key=key,
        server_root_ca_cert=ca,
        domain=settings.temporal_tls_server_name,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client for `settings`' address and namespace, always with the pydantic data converter."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            api_key=api_key,
            tls=tls_config(settings),
            data_converter=pydantic_data_converter,
            connect_timeout=CONNECT_TIMEOUT,
            runtime=runtime,
        )
    except (RuntimeError, ValueError) as err:
        # RuntimeError("Failed client connect: ...") on transport errors, ValueError on a malformed target.
        raise TemporalUnavailable(
            f"cannot reach Temporal at {settings.temporal_address}: {_short_reason(err)}"
        ) from err


def metrics_runtime(bind: str) -> Runtime:
    """A Runtime whose SDK metrics (temporal_*) are served for Prometheus at http://<bind>/metrics."""
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))
    except ValueError as err:  # e.g. "Failed starting Prometheus exporter: Address already in use"
        raise ValueError(f"cannot serve worker metrics on {bind!r}: {err}") from err


def _short_reason(err: Exception) -> str:
    text = str(err)
    for pattern in (r'message: "([^"]+)"', r'error: "([^"]+)"', r'ConnectError\("([^"]+)"'):
        if match := re.search(pattern, text):
            return match.group(1)
    text = text.removeprefix("Failed client connect: ").splitlines()[0] if text else type(err).__name__
    return text[:200]
