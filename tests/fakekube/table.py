"""`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`: what `kubectl get` prints (CRD printer columns)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .kinds import ResourceType

TABLE_ACCEPT = re.compile(r"as=Table")
_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 0}
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str) -> bool:
    return bool(TABLE_ACCEPT.search(accept))


def evaluate(obj: Any, path: str) -> list[Any]:
    """The subset of JSONPath CRD printer columns use: .field, [n], [*], [?(@.key=="value")]."""
    current = [obj]
    position = 0
    path = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            return []
        field, index, filter_key, filter_value = match.groups()
        position = match.end()
        following: list[Any] = []
        for value in current:
            if field is not None and isinstance(value, dict) and field in value:
                following.append(value[field])
            elif index == "*" and isinstance(value, list):
                following.extend(value)
            elif index is not None and index != "*" and isinstance(value, list) and int(index) < len(value):
                following.append(value[int(index)])
            elif filter_key is not None and isinstance(value, list):
                for item in value:
                    found = evaluate(item, f".{filter_key}")
                    if found and str(found[0]) == filter_value:
                        following.append(item)
        current = following
    return current


def human_age(timestamp: str, now: datetime | None = None) -> str:
    try:
        created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = max(int(((now or datetime.now(UTC)) - created).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cell(values: list[Any], column: dict[str, Any]) -> Any:
    if not values:
        return None
    if column.get("type") == "date":
        return human_age(str(values[0]))
    if len(values) == 1 and not isinstance(values[0], (dict, list)):
        return values[0]
    rendered = values if len(values) > 1 else values[0]
    return json.dumps(rendered, separators=(",", ":"))


def columns_for(resource_type: ResourceType) -> list[dict[str, Any]]:
    """NAME, then the CRD version's additionalPrinterColumns, or AGE alone (built-ins and CRDs without any)."""
    columns = list(resource_type.printer_columns) or [_AGE_COLUMN]
    return [_NAME_COLUMN, *({"priority": 0, **column} for column in columns)]


def table(
    resource_type: ResourceType,
    items: list[dict[str, Any]],
    resource_version: str,
    include_object: str,
) -> dict[str, Any]:
    columns = columns_for(resource_type)
    rows = []
    for item in items:
        cells = [
            item["metadata"]["name"],
            *(_cell(evaluate(item, column["jsonPath"]), column) for column in columns[1:]),
        ]
        if include_object == "Object":
            row_object = item
        else:
            row_object = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}
        rows.append({"cells": cells, "object": row_object})
    definitions = [{key: value for key, value in column.items() if key != "jsonPath"} for column in columns]
    for definition in definitions:
        definition.setdefault("format", "")
        definition.setdefault("description", "")
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
