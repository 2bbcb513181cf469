"""A vendor stand-in: a real HTTP server that records what each request carried and answers like the vendor.

Subclasses implement `answer(request)`. Tests can make every answer slow (`delay_seconds`, for timeouts) or
replace it (`override`, for answers that are not the vendor's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from tests.helpers.http_receiver import HttpReceiver, RecordedRequest, ScriptedResponse


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # without the query string
    params: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes

    @classmethod
    def of(cls, request: RecordedRequest) -> SeenRequest:
        parts = urlsplit(request.path)
        return cls(request.method, parts.path, parse_qs(parts.query), request.headers, request.body)

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class VendorStandIn:
    def __init__(self) -> None:
        self.seen: list[SeenRequest] = []
        self.delay_seconds = 0.0
        self.override: ScriptedResponse | None = None
        self._receiver = HttpReceiver()
        self._receiver.handler = self._handle

    @property
    def url(self) -> str:
        return self._receiver.url

    @property
    def last(self) -> SeenRequest:
        return self.seen[-1]

    def answer(self, request: SeenRequest) -> ScriptedResponse:
        raise NotImplementedError

    def _handle(self, recorded: RecordedRequest) -> ScriptedResponse:
        request = SeenRequest.of(recorded)
        self.seen.append(request)
        response = self.override if self.override is not None else self.answer(request)
        return replace(response, delay_seconds=self.delay_seconds) if self.delay_seconds else response

    def __enter__(self) -> Self:
        self._receiver.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._receiver.stop()
