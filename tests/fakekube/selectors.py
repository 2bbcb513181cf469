"""Label and field selectors as the apiserver parses them (`labelSelector=`, `fieldSelector=` query parameters)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import bad_request

Requirement = Callable[[Mapping[str, str]], bool]

_SET_EXPR = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_EXPR = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split_top_level(selector: str) -> list[str]:
    """Split on commas that are not inside `in (a, b)` parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(expression: str) -> Requirement:
    if match := _EQ_EXPR.match(expression):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _SET_EXPR.match(expression):
        negated, key, operator, values_text = match.groups()
        if operator is None:
            if negated:
                return lambda labels: key not in labels
            return lambda labels: key in labels
        if negated:
            raise bad_request(f"unable to parse requirement: {expression!r}")
        values = {value.strip() for value in values_text.split(",") if value.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    raise bad_request(f"unable to parse requirement: found '{expression}', expected: valid label selector")


def parse_label_selector(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    if not selector:
        return lambda labels: True
    requirements = [_requirement(part) for part in _split_top_level(selector)]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def matches_labels(selector: Callable[[Mapping[str, str]], bool], obj: Mapping[str, Any]) -> bool:
    return selector((obj.get("metadata") or {}).get("labels") or {})


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_field_selector(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """`metadata.name`, `metadata.namespace` and any other dotted field path, with `=`, `==` and `!=`."""
    if not selector:
        return lambda obj: True
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in _split_top_level(selector):
        match = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        path, operator, value = match.groups()
        if operator == "!=":
            checks.append(lambda obj, p=path, v=value: _field_value(obj, p) != v)  # type: ignore[misc]
        else:
            checks.append(lambda obj, p=path, v=value: _field_value(obj, p) == v)  # type: ignore[misc]
    return lambda obj: all(check(obj) for check in checks)


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """A `LabelSelector` (matchLabels/matchExpressions) in the string form `Scale.status.selector` uses."""
    if not selector:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
