"""Datadog API v1 stand-in: `GET /api/v1/query` (timeseries points) and `GET /api/v1/validate`.

As documented: keys in `DD-API-KEY` / `DD-APPLICATION-KEY` (403 `{"errors": ["Forbidden"]}` otherwise),
`from`/`to` in seconds since the epoch and `query` all required (400 `{"errors": [...]}`), points as
`[milliseconds, value]` pairs inside the requested window, `from_date`/`to_date` in milliseconds.
"""

from __future__ import annotations

from typing import Any

from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.standins.base import SeenRequest, VendorStandIn

FORBIDDEN = ScriptedResponse(status=403, body={"errors": ["Forbidden"]})


class DatadogStandIn(VendorStandIn):
    def __init__(self, api_key: str, application_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.application_key = application_key
        # query -> series, each a list of (unix seconds, value or None)
        self.series: dict[str, list[list[tuple[int, float | None]]]] = {}

    def answer(self, request: SeenRequest) -> ScriptedResponse:
        if request.method != "GET":
            return ScriptedResponse(status=405, body={"errors": ["Method Not Allowed"]})
        if request.header("DD-API-KEY") != self.api_key:
            return FORBIDDEN
        if request.path == "/api/v1/validate":
            return ScriptedResponse(body={"valid": True})
        if request.path != "/api/v1/query":
            return ScriptedResponse(status=404, body={"errors": ["Not found"]})
        if request.header("DD-APPLICATION-KEY") != self.application_key:
            return FORBIDDEN
        return self._query(request)

    def _query(self, request: SeenRequest) -> ScriptedResponse:
        query, start, end = request.param("query"), request.param("from"), request.param("to")
        if not query or start is None or end is None:
            return ScriptedResponse(status=400, body={"errors": ["The parameters from, to and query are required"]})
        if not start.isdigit() or not end.isdigit():
            return ScriptedResponse(status=400, body={"errors": ["from and to must be seconds since the epoch"]})
        if query.startswith("syntax error"):
            return ScriptedResponse(status=400, body={"errors": [f"Error parsing query: {query}"]})
        first, last = int(start), int(end)
        series = []
        for points in self.series.get(query, []):
            inside = [[float(when * 1000), value] for when, value in points if first <= when <= last]
            if inside:
                series.append(_series(query, inside))
        body: dict[str, Any] = {
            "status": "ok",
            "res_type": "time_series",
            "query": query,
            "message": "",
            "error": "",
            "from_date": first * 1000,
            "to_date": last * 1000,
            "group_by": [],
            "series": series,
        }
        return ScriptedResponse(body=body)


def _series(query: str, points: list[list[Any]]) -> dict[str, Any]:
    return {
        "metric": query.split("{")[0].split(":")[-1],
        "display_name": query,
        "expression": query,
        "scope": "*",
        "aggr": "avg",
        "interval": 60,
        "length": len(points),
        "start": int(points[0][0]),
        "end": int(points[-1][0]),
        "query_index": 0,
        "tag_set": [],
        "unit": None,
        "pointlist": points,
    }
