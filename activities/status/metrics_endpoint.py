"""The worker's metrics endpoint: http://<bind>/metrics serves a registry's families followed by the text of another
exporter (the Temporal SDK's, which can only serve from its own HTTP server), so one scrape shows both.

Kept out of workers/worker.py: workflow sandboxes re-import that module, and they refuse subclasses of http.server.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

log = logging.getLogger("canaryflow.worker")

METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SDK_SCRAPE_TIMEOUT_SECONDS = 2.0


class MetricsEndpoint:
    """http://<bind>/metrics: `registry`'s families, then the text the SDK exporter at `sdk_address` serves."""

    def __init__(self, bind: str, registry: CollectorRegistry, sdk_address: str | None = None) -> None:
        host, _, port = bind.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        self.registry = registry
        self.sdk_url = f"http://{sdk_address}{METRICS_PATH}" if sdk_address else None
        server_class = _IPv6Server if ":" in host else _IPv4Server
        try:
            self._server = server_class((host, int(port)), _MetricsHandler)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot serve worker metrics on {bind!r}: {err}") from err
        self._server.endpoint = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-endpoint", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def exposition(self) -> bytes:
        ours = generate_latest(self.registry)
        if self.sdk_url is None:
            return ours
        # A direct request: a proxy from the environment must not see a loopback scrape.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.sdk_url, timeout=SDK_SCRAPE_TIMEOUT_SECONDS) as answer:
                sdk: bytes = answer.read()
        except (urllib.error.URLError, OSError) as err:
            log.warning("Temporal SDK metrics unavailable at %s: %s", self.sdk_url, err)
            return ours
        return ours if not sdk else ours + (sdk if sdk.endswith(b"\n") else sdk + b"\n")


class _IPv4Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: MetricsEndpoint


class _IPv6Server(_IPv4Server):
    address_family = socket.AF_INET6


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _IPv4Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self.send_error(404, f"metrics are at {METRICS_PATH}")
            return
        body = self.server.endpoint.exposition()
        self.send_response(200)
        self.send_header("Content-Type", METRICS_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the worker's own log
