"""New Relic Insights query API stand-in: `GET /v1/accounts/<account id>/query?nrql=<NRQL>`.

As documented: the query key in `X-Query-Key` (401 `{"error": ...}` otherwise), the account in the path, NRQL
URL-encoded in `nrql`; rows come back as `{"results": [{...}], "metadata": {...}}`. A statement must start with
SELECT or FROM (400 `{"error": "NRQL Syntax Error: ..."}` otherwise). `SINCE <n> seconds ago` is parsed off the
end and kept in `since_seconds` so tests can assert the window that was asked for.
"""

from __future__ import annotations

import re
from typing import Any

from tests.helpers.http_receiver import ScriptedResponse
from tests.metrics.standins.base import SeenRequest, VendorStandIn

_SINCE = re.compile(r"\s+SINCE (\d+) seconds ago$")


class NewRelicStandIn(VendorStandIn):
    def __init__(self, account_id: str, query_key: str) -> None:
        super().__init__()
        self.account_id = account_id
        self.query_key = query_key
        self.rows: dict[str, list[dict[str, Any]]] = {}  # NRQL without its SINCE clause -> result rows
        self.since_seconds: list[int] = []
        self.statements: list[str] = []

    def answer(self, request: SeenRequest) -> ScriptedResponse:
        if request.method != "GET" or request.path != f"/v1/accounts/{self.account_id}/query":
            return ScriptedResponse(status=404, body={"error": "Not Found"})
        if request.header("X-Query-Key") != self.query_key:
            return ScriptedResponse(status=401, body={"error": "Invalid query key"})
        nrql = request.param("nrql") or ""
        if not re.match(r"\s*(SELECT|FROM)\b", nrql, re.IGNORECASE):
            return ScriptedResponse(
                status=400, body={"error": f"NRQL Syntax Error: Error at line 1 position 0: {nrql}"}
            )
        since = _SINCE.search(nrql)
        statement = nrql[: since.start()] if since else nrql
        if since:
            self.since_seconds.append(int(since.group(1)))
        self.statements.append(statement)
        rows = self.rows.get(statement.strip(), [{"result": None}])
        metadata = {"eventTypes": ["Metric"], "rawSince": f"{since.group(1)} SECONDS AGO" if since else "1 HOUR AGO"}
        return ScriptedResponse(body={"results": rows, "metadata": metadata, "performanceStats": {"wallClockTime": 3}})
