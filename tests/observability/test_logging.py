"""Process logging: JSON lines carrying the release, phase and step; text for people."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from canaryflow.logging import configure_logging
from canaryflow.settings import Settings


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Where configure_logging writes during the test; the logging setup is restored after it."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    saved_flags = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    yield io.StringIO()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = saved_flags


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_message_and_given_context(log_stream: io.StringIO) -> None:
    configure_logging("info", json_format=True, stream=log_stream)

    logging.getLogger("canaryflow.controller").warning(
        "canary %s halted", "podinfo", extra={"release": "canary/test/podinfo", "phase": "Progressing", "step": "gate"}
    )
    logging.getLogger("canaryflow.controller").debug("not at info level")

    [line] = json_lines(log_stream)
    assert line.pop("time").endswith("+00:00")
    assert line == {
        "level": "WARNING",
        "logger": "canaryflow.controller",
        "message": "canary podinfo halted",
        "release": "canary/test/podinfo",
        "phase": "Progressing",
        "step": "gate",
    }


def test_exceptions_are_one_field_of_the_line(log_stream: io.StringIO) -> None:
    configure_logging("INFO", json_format=True, stream=log_stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("canaryflow.worker").exception("step failed")

    [line] = json_lines(log_stream)
    assert line["message"] == "step failed"
    assert "RuntimeError: boom" in line["exception"]


@activity.defn(name="metrics.query")
async def logging_activity() -> None:
    activity.logger.info("querying prometheus")


async def test_activity_records_name_the_release_and_the_step(log_stream: io.StringIO) -> None:
    configure_logging("INFO", json_format=True, stream=log_stream)
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id="canary/test/podinfo", workflow_run_id="run-1", activity_type="metrics.query", attempt=2
    )

    await env.run(logging_activity)

    [line] = json_lines(log_stream)
    assert line["message"] == "querying prometheus"  # no details repeated in the text
    assert (line["release"], line["run_id"], line["step"], line["attempt"]) == (
        "canary/test/podinfo",
        "run-1",
        "metrics.query",
        2,
    )


@workflow.defn(sandboxed=False)
class LoggingRelease:
    @workflow.run
    async def run(self) -> None:
        workflow.logger.info("phase %s", "Progressing", extra={"phase": "Progressing"})
        await workflow.sleep(timedelta(seconds=1))


async def test_workflow_records_name_the_release_and_phase(
    log_stream: io.StringIO, time_skipping_env: WorkflowEnvironment
) -> None:
    configure_logging("INFO", json_format=True, stream=log_stream)
    task_queue = f"test-{uuid.uuid4()}"
    workflow_id = f"canary/test/{uuid.uuid4().hex[:8]}"

    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[LoggingRelease]):
        await time_skipping_env.client.execute_workflow(LoggingRelease.run, id=workflow_id, task_queue=task_queue)

    [line] = [line for line in json_lines(log_stream) if line["logger"] == "temporalio.workflow"]
    assert line["message"] == "phase Progressing"
    assert (line["release"], line["phase"], line["workflow_type"]) == (workflow_id, "Progressing", "LoggingRelease")


def test_text_format_and_reconfiguring_replace_the_handler(log_stream: io.StringIO) -> None:
    configure_logging("INFO", json_format=True, stream=io.StringIO())
    configure_logging("INFO", json_format=False, stream=log_stream)

    logging.getLogger("canaryflow.worker").info("worker polling")

    [text] = log_stream.getvalue().splitlines()
    assert text.endswith(" INFO canaryflow.worker: worker polling")
    assert [h.name for h in logging.getLogger().handlers].count("canaryflow") == 1


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "text"
    monkeypatch.setenv("CANARYFLOW_LOG_FORMAT", "JSON")
    assert Settings().log_format == "json"
    monkeypatch.setenv("CANARYFLOW_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()
