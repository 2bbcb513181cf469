"""Graphite render URL API stand-in: `GET <prefix>/render?target=...&from=...&format=json`.

As documented for graphite-web: without `format=json` the answer is a PNG graph; a target that does not parse
is a 400 with a plain-text message; `format=json` answers `[{"target", "tags", "datapoints": [[value, ts]]}]`
with null for empty intervals; a target matching nothing answers `[]`. Basic auth (the usual reverse-proxy
setup) is checked when `username` is set: 401 with `WWW-Authenticate` otherwise.
"""

from __future__ import annotations

import base64
import time

from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.standins.base import SeenRequest, VendorStandIn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class GraphiteStandIn(VendorStandIn):
    def __init__(self, prefix: str = "", username: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.username = username
        self.password = password
        self.targets: dict[str, list[float | str | None]] = {}  # target -> values, one per 10 s step

    @property
    def address(self) -> str:
        return f"{self.url}{self.prefix}"

    def answer(self, request: SeenRequest) -> ScriptedResponse:
        if self.username is not None and not self._authorized(request):
            return ScriptedResponse(
                status=401, body="Unauthorized", headers={"WWW-Authenticate": 'Basic realm="graphite"'}
            )
        if request.method != "GET" or request.path != f"{self.prefix}/render":
            return ScriptedResponse(status=404, body="Not Found")
        targets = request.params.get("target", [])
        if not targets:
            return ScriptedResponse(status=400, body="Missing required parameter 'target'")
        for target in targets:
            if target.count("(") != target.count(")"):
                return ScriptedResponse(status=400, body=f"Invalid target: unbalanced parentheses in {target}")
        if request.param("format") != "json":
            return ScriptedResponse(body=PNG_SIGNATURE + b"graph", headers={"Content-Type": "image/png"})
        now = int(time.time()) // 10 * 10
        series = []
        for target in targets:
            if target in self.targets:
                values = self.targets[target]
                start = now - 10 * len(values)
                datapoints = [[value, start + 10 * index] for index, value in enumerate(values)]
                series.append({"target": target, "tags": {"name": target}, "datapoints": datapoints})
        return ScriptedResponse(body=series)

    def _authorized(self, request: SeenRequest) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return request.header("Authorization") == f"Basic {expected}"
