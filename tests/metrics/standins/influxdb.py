"""InfluxDB v2 query API stand-in: `POST /api/v2/query?org=<org>` with a JSON `{"query": <Flux>, "dialect": ...}`.

As documented: `Authorization: Token <token>` (401 `{"code": "unauthorized", ...}` otherwise), the org by name
(404 when unknown), results as annotated CSV (`#datatype`, `#group`, `#default` rows, then the header and one
row per record), compile errors as 400 `{"code": "invalid", "message": ...}`, a missing bucket as 404, and
errors while running as an `error,reference` table inside a 200. Only `from(bucket: ...) |> range(start: ...)`
pipelines are understood; `range` starts are kept in `range_starts` for assertions.
"""

from __future__ import annotations

import csv
import io
import json
import re

from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.standins.base import SeenRequest, VendorStandIn

_FROM = re.compile(r'^\s*from\(\s*bucket\s*:\s*"([^"]+)"\s*\)')
_RANGE = re.compile(r"range\(\s*start\s*:\s*(-?[0-9a-z]+)")
CSV_HEADERS = {"Content-Type": "text/csv; charset=utf-8"}
Value = float | int | str | bool | None


class InfluxDBStandIn(VendorStandIn):
    def __init__(self, token: str, org: str) -> None:
        super().__init__()
        self.token = token
        self.org = org
        self.buckets: dict[str, list[Value]] = {}  # bucket -> the `_value` of each record
        self.range_starts: list[str] = []

    def answer(self, request: SeenRequest) -> ScriptedResponse:
        if request.method != "POST" or request.path != "/api/v2/query":
            return ScriptedResponse(status=404, body={"code": "not found", "message": "path not found"})
        if request.header("Authorization") != f"Token {self.token}":
            return ScriptedResponse(status=401, body={"code": "unauthorized", "message": "unauthorized access"})
        if request.param("org") != self.org:
            message = f'failed to decode request body: organization name "{request.param("org")}" not found'
            return ScriptedResponse(status=404, body={"code": "not found", "message": message})
        if not (request.header("Content-Type") or "").startswith("application/json"):
            return ScriptedResponse(status=415, body={"code": "invalid", "message": "unsupported media type"})
        flux = json.loads(request.body)["query"]
        source = _FROM.match(flux)
        if source is None:
            return ScriptedResponse(
                status=400, body={"code": "invalid", "message": "compilation failed: error at @1:1: expected from()"}
            )
        if source.group(1) not in self.buckets:
            message = f'failed to initialize execute state: could not find bucket "{source.group(1)}"'
            return ScriptedResponse(status=404, body={"code": "not found", "message": message})
        if start := _RANGE.search(flux):
            self.range_starts.append(start.group(1))
        if "|> die(" in flux:
            return ScriptedResponse(body=_error_table("runtime error @3:6-3:20: die: boom"), headers=CSV_HEADERS)
        return ScriptedResponse(body=_table(self.buckets[source.group(1)]), headers=CSV_HEADERS)


def _datatype(values: list[Value]) -> str:
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, bool) for value in present):
        return "boolean"
    if present and all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return "long"
    if present and all(isinstance(value, str) for value in present):
        return "string"
    return "double"


def _cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _table(values: list[Value]) -> str:
    if not values:
        return "\r\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    time_type = "dateTime:RFC3339"
    writer.writerow(["#datatype", "string", "long", time_type, time_type, time_type, _datatype(values), "string"])
    writer.writerow(["#group", "false", "false", "true", "true", "false", "false", "true"])
    writer.writerow(["#default", "_result", "", "", "", "", "", ""])
    writer.writerow(["", "result", "table", "_start", "_stop", "_time", "_value", "_field"])
    for index, value in enumerate(values):
        moment = f"2026-11-22T03:{index:02d}:00Z"
        row = ["", "", "0", "2026-11-22T02:00:00Z", "2026-11-22T04:00:00Z", moment, _cell(value), "errors"]
        writer.writerow(row)
    return out.getvalue() + "\r\n"


def _error_table(message: str) -> str:
    return f'#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,"{message}",\r\n\r\n'
