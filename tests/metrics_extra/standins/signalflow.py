"""A Splunk Observability stand-in: SignalFlow's HTTP execute (Server-Sent Events) and `/v2/metric`, X-SF-Token.

`programs[text]` lists the data batches a program produces, each a list of `(tsId, value)`; a program it does not
know gets a 400 with SignalFlow's `{"message", "errorType"}` body. `failing[text]` answers an `error` event
instead (a program that compiles but cannot run). `delay_seconds` holds the stream open before its first event;
`malformed` sends a data event that is not JSON. Each execute request's query parameters are kept in `executions`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class SignalFlowStandIn:
    token: str
    programs: dict[str, list[list[tuple[str, float | None]]]] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    malformed: bool = False
    executions: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/signalflow/execute", self._execute)
        app.router.add_get("/v2/metric", self._metric)
        return app

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-SF-Token") != self.token:
            return web.json_response({"code": 401, "message": "Unauthorized"}, status=401)
        return None

    async def _metric(self, request: web.Request) -> web.Response:
        return self._unauthorized(request) or web.json_response(
            {"count": 1, "results": [{"name": "demo.trans.latency", "type": "GAUGE"}]}
        )

    async def _execute(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._unauthorized(request)) is not None:
            return refused
        self.executions.append(dict(request.query))
        program = await request.text()
        if program not in self.programs and program not in self.failing:
            return web.json_response(
                {"message": "Failed to parse program", "errorType": "ANALYTICS_PROGRAM_COMPILATION_FAILED"}, status=400
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        now = int(time.time() * 1000)
        await _send(response, "control-message", {"event": "STREAM_START", "timestampMs": now})
        await _send(response, "control-message", {"event": "JOB_START", "handle": "EXAMPLE", "timestampMs": now})
        if program in self.failing:
            await _send(response, "error", {"errors": [{"code": "ANALYTICS_ERROR", "message": self.failing[program]}]})
            return response
        batches = self.programs[program]
        for ts_id in sorted({ts_id for batch in batches for ts_id, _ in batch}):
            await _send(response, "metadata", {"tsId": ts_id, "properties": {"sf_metric": "demo.trans.latency"}})
        for offset, batch in enumerate(batches):
            if self.malformed:
                await response.write(b"event: data\ndata: {not json\n\n")
                continue
            data = [{"tsId": ts_id, "value": value} for ts_id, value in batch]
            await _send(response, "data", {"data": data, "logicalTimestampMs": now - (len(batches) - offset) * 1000})
        await _send(response, "control-message", {"event": "END_OF_CHANNEL", "timestampMs": now})
        return response


async def _send(response: web.StreamResponse, event: str, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=1)  # multi-line data fields, as SSE allows
    lines = "".join(f"data: {line}\n" for line in text.splitlines())
    await response.write(f"event: {event}\n{lines}\n".encode())
