"""Fault injection (method + path regex → an error status for N calls, optional latency) and the request log."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    status: int = 0  # filled once the response is known (for watches: when the stream ends)


@dataclass
class Fault:
    method: str  # "*" for any
    path_pattern: re.Pattern[str]
    status: int  # below 400: only the delay, then the request is served normally
    reason: str
    remaining: int
    delay_seconds: float = 0.0


@dataclass
class FaultInjector:
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault with calls left, counting this call."""
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.method in ("*", method) and fault.path_pattern.search(path):
                    fault.remaining -= 1
                    return fault
            return None
