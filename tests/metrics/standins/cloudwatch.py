"""CloudWatch through moto's server (in this process, on a free 127.0.0.1 port), fed with real `PutMetricData`.

moto speaks the CloudWatch wire protocol botocore uses and keeps the datapoints it is sent; `GetMetricData`
filters them by StartTime/EndTime and aggregates them by each query's Period and Stat (metric math is limited
to an expression naming another query's Id). `require_auth()` makes it check credentials like AWS does
(unknown keys get 403 InvalidClientTokenId) until `allow_any_credentials()`.
"""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

import boto3
from moto.server import ThreadedMotoServer

from tests.conftest import free_port

REGION = "eu-west-1"


class MotoCloudWatch:
    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def put(self, namespace: str, metric: str, dimensions: dict[str, str], points: list[tuple[float, float]]) -> None:
        """Datapoints `(seconds ago, value)` for one metric, sent with PutMetricData."""
        client = boto3.client(
            "cloudwatch",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="seed",
            aws_secret_access_key="seed",
        )
        now = datetime.now(UTC)
        client.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions.items()],
                    "Timestamp": now - timedelta(seconds=ago),
                    "Value": value,
                    "Unit": "Count",
                }
                for ago, value in points
            ],
        )
        client.close()

    def require_auth(self) -> None:
        self._reset_auth(b"0")

    def allow_any_credentials(self) -> None:
        self._reset_auth(b"inf")

    def _reset_auth(self, count: bytes) -> None:
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth", data=count, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.stop()
