"""A Dynatrace Metrics API v2 stand-in: `/api/v2/metrics/query` and `/api/v2/metrics`, Api-Token auth.

`series[selector]` holds the `data` items answered for a metric selector (one `result` entry); a selector it does
not know is a 400 as Dynatrace answers an unparsable selector. `delay_seconds` slows every answer, `malformed`
answers HTML. Every query's parameters are kept in `queries`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class DynatraceStandIn:
    token: str
    series: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    delay_seconds: float = 0.0
    malformed: bool = False
    queries: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2/metrics/query", self._query)
        app.router.add_get("/api/v2/metrics", self._metrics)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Api-Token {self.token}"

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if not self._authorized(request):
            return _error(401, "Token Authentication failed")
        if self.malformed:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        return web.json_response(body)

    async def _query(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        selector = request.query.get("metricSelector", "")
        if self._authorized(request) and selector not in self.series:
            return _error(400, f"Cannot parse metric selector: {selector}")
        data = self.series.get(selector, [])
        body = {
            "totalCount": len(data),
            "nextPageKey": None,
            "resolution": request.query.get("resolution", "Inf"),
            "result": [
                {"metricId": selector, "dataPointCountRatio": 0.0001, "dimensionCountRatio": 0.01, "data": data}
            ],
        }
        return await self._answer(request, body)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = {"totalCount": 1, "nextPageKey": None, "metrics": [{"metricId": "builtin:service.errors.total.rate"}]}
        return await self._answer(request, body)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


def series(value: float | None, **dimensions: str) -> dict[str, Any]:
    """One `data` item folded to a single point, as `resolution=Inf` answers."""
    return {
        "dimensions": list(dimensions.values()),
        "dimensionMap": dimensions,
        "timestamps": [1700000000000],
        "values": [value],
    }
