"""Process logging for the worker and the controller: plain text for people, or one JSON object per line.

JSON records carry the release they concern when known: `release` (the workflow id) and `run_id` from the details
Temporal's workflow and activity loggers attach, `step` (the activity type, or the update's name), and `phase`
and `step` given by the caller as `extra={"phase": ..., "step": ...}`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio import activity, workflow

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Marks the handler configure_logging installs, so configuring again replaces it instead of adding a second one.
_HANDLER_NAME = "canaryflow"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the release context when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(release_context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def release_context(record: logging.LogRecord) -> dict[str, Any]:
    """What the record says about the release it concerns: release, run_id, workflow_type, phase, step, attempt."""
    attributes = record.__dict__
    in_workflow = _mapping(attributes.get("temporal_workflow"))
    in_activity = _mapping(attributes.get("temporal_activity"))
    in_update = _mapping(attributes.get("temporal_update"))
    context: dict[str, Any] = {
        "release": attributes.get("release") or in_workflow.get("workflow_id") or in_activity.get("workflow_id"),
        "run_id": in_workflow.get("run_id") or in_activity.get("workflow_run_id"),
        "workflow_type": in_workflow.get("workflow_type") or in_activity.get("workflow_type"),
        "phase": attributes.get("phase"),
        "step": attributes.get("step") or in_activity.get("activity_type") or in_update.get("update_name"),
        "attempt": in_activity.get("attempt"),
    }
    return {key: value for key, value in context.items() if value not in (None, "")}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def configure_logging(level: str, json_format: bool, *, stream: TextIO | None = None) -> None:
    """Log to `stream` (stderr) at `level`, as JSON lines or text; calling it again replaces the previous setup."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.name = _HANDLER_NAME
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.name == _HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Temporal's loggers repeat their details in the message text; in JSON they are fields already.
    workflow.logger.workflow_info_on_message = not json_format
    activity.logger.activity_info_on_message = not json_format
