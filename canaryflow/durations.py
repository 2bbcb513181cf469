"""Go's `time.ParseDuration` (Flagger parses every interval and timeout with it), in one place."""

from __future__ import annotations

import re

# Go's grammar: [-+]?([0-9]*(\.[0-9]*)?unit)+ with at least one digit per part; both micro signs are accepted.
_DURATION_UNIT = r"(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION = re.compile(rf"[+-]?(?:{_DURATION_NUMBER}{_DURATION_UNIT})+")
_DURATION_PART = re.compile(rf"({_DURATION_NUMBER})({_DURATION_UNIT})")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for non-negative values ("1m30s", "10s", "500ms", ".5s"); seconds as float.

    Like Go, no surrounding whitespace is allowed and a bare number other than "0" has no unit, so is invalid.
    """
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    if unsigned == "0":
        return 0.0
    if not _DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 1m, 1m30s")
    if text.startswith("-"):
        raise ValueError(f"negative duration {text!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(unsigned))
