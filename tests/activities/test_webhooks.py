"""The webhook activity against a real local HTTP server, with Flagger's status and retry rules."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities import webhooks
from activities.contracts import WebhookCall, WebhookResult
from activities.webhooks import (
    Backoff,
    call_webhook,
    parse_retry_after,
    retry_wait_seconds,
    webhook_activity_timeout,
)
from tests.helpers.http_receiver import HttpReceiver, ScriptedResponse

PAYLOAD: dict[str, Any] = {
    "name": "podinfo",
    "namespace": "test",
    "phase": "Progressing",
    "checksum": "6d9f7c8b",
    "metadata": {"type": "bash", "cmd": "curl -s http://podinfo-canary.test/"},
}


def webhook(url: str, **overrides: Any) -> WebhookCall:
    fields: dict[str, Any] = {
        "name": "acceptance-test",
        "type": "pre-rollout",
        "url": url,
        "timeout_seconds": 5.0,
        "payload": PAYLOAD,
    }
    return WebhookCall(**{**fields, **overrides})


async def run_webhook(call: WebhookCall, heartbeats: list[Any] | None = None) -> WebhookResult:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.extend(details)
    return await env.run(call_webhook, call)


# --- status codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_status_up_to_202_passes(receiver: HttpReceiver, status: int) -> None:
    receiver.script(ScriptedResponse(status=status, body="load test started"))

    result = await run_webhook(webhook(receiver.url_for("/")))

    assert result == WebhookResult(ok=True, status_code=status, message="load test started", attempts=1)


@pytest.mark.parametrize(
    ("status", "body"),
    [(403, "  Forbidden: gate is closed\n"), (400, "invalid payload"), (404, "page not found")],
)
async def test_non_retryable_status_fails_with_the_trimmed_body_as_message(
    receiver: HttpReceiver, status: int, body: str
) -> None:
    receiver.script(ScriptedResponse(status=status, body=body))

    result = await run_webhook(webhook(receiver.url_for("/gate/check"), retries=3))

    assert result == WebhookResult(ok=False, status_code=status, message=body.strip(), attempts=1)
    assert len(receiver.requests) == 1


async def test_204_fails_like_in_flagger(receiver: HttpReceiver) -> None:
    receiver.script(ScriptedResponse(status=204))

    result = await run_webhook(webhook(receiver.url_for("/")))

    assert not result.ok
    assert result.status_code == 204
    assert "HTTP 204" in result.message


async def test_500_without_retries_gives_up_after_one_attempt_and_keeps_the_body(
    receiver: HttpReceiver,
) -> None:
    receiver.script(ScriptedResponse(status=500, body="command failed: exit status 1"))

    result = await run_webhook(webhook(receiver.url_for("/")))

    assert result == WebhookResult(
        ok=False,
        status_code=500,
        message="giving up after 1 attempt(s): HTTP 500: command failed: exit status 1",
        attempts=1,
    )


async def test_long_body_is_capped_in_the_message(receiver: HttpReceiver) -> None:
    receiver.script(ScriptedResponse(status=403, body="x" * 10_000))

    result = await run_webhook(webhook(receiver.url_for("/")))

    assert result.message.startswith("x" * 100)
    assert len(result.message) <= webhooks.MESSAGE_LIMIT_CHARS + 1


# --- request shape -----------------------------------------------------------------------------------


async def test_posts_the_payload_as_json(receiver: HttpReceiver) -> None:
    await run_webhook(webhook(receiver.url_for("/hooks/pre?suite=smoke")))

    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == "/hooks/pre?suite=smoke"
    assert request.header("Content-Type") == "application/json"
    assert request.json == PAYLOAD


# --- retries -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("failing_status", [500, 502, 503, 504, 429])
async def test_retryable_answers_are_retried_until_success(receiver: HttpReceiver, failing_status: int) -> None:
    receiver.script(ScriptedResponse(status=failing_status), ScriptedResponse(status=failing_status))
    heartbeats: list[Any] = []

    result = await run_webhook(webhook(receiver.url_for("/"), retries=2), heartbeats)

    assert result == WebhookResult(ok=True, status_code=200, message="", attempts=3)
    assert len(receiver.requests) == 3
    assert all(request.json == PAYLOAD for request in receiver.requests)
    assert any(f"attempt 1/3 failed: HTTP {failing_status}" in str(detail) for detail in heartbeats)
    assert any(f"attempt 2/3 failed: HTTP {failing_status}" in str(detail) for detail in heartbeats)


@pytest.mark.usefixtures("fast_retries")
async def test_exhausted_retries_give_up_with_the_attempt_count(receiver: HttpReceiver) -> None:
    receiver.default = ScriptedResponse(status=503, body="upstream unavailable")

    result = await run_webhook(webhook(receiver.url_for("/"), retries=2))

    assert result == WebhookResult(
        ok=False,
        status_code=503,
        message="giving up after 3 attempt(s): HTTP 503: upstream unavailable",
        attempts=3,
    )
    assert len(receiver.requests) == 3


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("status", [400, 501])
async def test_400_and_501_are_not_retried(receiver: HttpReceiver, status: int) -> None:
    receiver.default = ScriptedResponse(status=status, body="no")

    result = await run_webhook(webhook(receiver.url_for("/"), retries=3))

    assert result == WebhookResult(ok=False, status_code=status, message="no", attempts=1)
    assert len(receiver.requests) == 1


async def test_retry_after_header_replaces_the_exponential_wait(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the header the first retry would wait 20 s; "Retry-After: 0" makes it immediate.
    monkeypatch.setattr(webhooks, "RETRY_WAIT_MIN_SECONDS", 20.0)
    receiver.script(ScriptedResponse(status=503, headers={"Retry-After": "0"}))

    started = time.monotonic()
    result = await run_webhook(webhook(receiver.url_for("/"), retries=1))

    assert result.ok
    assert result.attempts == 2
    assert time.monotonic() - started < 5


# --- transport failures -------------------------------------------------------------------------------


async def test_an_attempt_slower_than_the_timeout_fails_with_a_clear_message(receiver: HttpReceiver) -> None:
    receiver.script(ScriptedResponse(status=200, delay_seconds=3))

    started = time.monotonic()
    result = await run_webhook(webhook(receiver.url_for("/"), timeout_seconds=0.3))

    assert result == WebhookResult(
        ok=False, status_code=None, message="giving up after 1 attempt(s): timed out after 0.3s", attempts=1
    )
    assert time.monotonic() - started < 2


@pytest.mark.usefixtures("fast_retries")
async def test_a_timed_out_attempt_is_retried(receiver: HttpReceiver) -> None:
    receiver.script(ScriptedResponse(status=200, delay_seconds=3), ScriptedResponse(status=202))

    result = await run_webhook(webhook(receiver.url_for("/"), timeout_seconds=0.3, retries=1))

    assert result == WebhookResult(ok=True, status_code=202, message="", attempts=2)


@pytest.mark.usefixtures("fast_retries")
async def test_connection_refused_is_retried_then_reported(closed_port: int) -> None:
    result = await run_webhook(webhook(f"http://127.0.0.1:{closed_port}/", retries=2))

    assert not result.ok
    assert result.status_code is None
    assert result.attempts == 3
    assert result.message == "giving up after 3 attempt(s): connection refused"


async def test_unsupported_scheme_is_not_retried() -> None:
    result = await run_webhook(webhook("ftp://127.0.0.1/hook", retries=3))

    assert not result.ok
    assert result.attempts == 1
    assert "invalid webhook URL" in result.message


# --- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def tls_receiver(self_signed_tls: ssl.SSLContext) -> Iterator[HttpReceiver]:
    with HttpReceiver(ssl_context=self_signed_tls) as running:
        yield running


@pytest.mark.usefixtures("fast_retries")
async def test_untrusted_certificate_fails_without_retry(tls_receiver: HttpReceiver) -> None:
    result = await run_webhook(webhook(tls_receiver.url_for("/"), retries=2))

    assert not result.ok
    assert result.attempts == 1
    assert "certificate verification failed" in result.message
    assert tls_receiver.requests == []


async def test_disable_tls_accepts_an_untrusted_certificate(tls_receiver: HttpReceiver) -> None:
    result = await run_webhook(webhook(tls_receiver.url_for("/"), disable_tls=True))

    assert result.ok
    assert tls_receiver.requests[0].json == PAYLOAD


# --- secret URLs -------------------------------------------------------------------------------------


async def test_secret_url_is_read_from_the_canary_namespace(receiver: HttpReceiver, secrets_dir: Path) -> None:
    (secrets_dir / "test").mkdir()
    (secrets_dir / "test" / "hooks.yaml").write_text(f"gate: {receiver.url_for('/gate?token=s3cr3t')}\n")
    (secrets_dir / "hooks.yaml").write_text("gate: http://127.0.0.1:9/wrong-one\n")

    result = await run_webhook(webhook("secret:hooks/gate"))

    assert result.ok
    [request] = receiver.requests
    assert request.path == "/gate?token=s3cr3t"
    assert request.json == PAYLOAD


async def test_secret_url_falls_back_to_the_shared_secret_file(receiver: HttpReceiver, secrets_dir: Path) -> None:
    (secrets_dir / "hooks.json").write_text(f'{{"gate": "{receiver.url_for("/shared")}"}}')

    result = await run_webhook(webhook("secret:hooks/gate"))

    assert result.ok
    assert receiver.requests[0].path == "/shared"


async def test_a_failing_secret_url_never_shows_the_url(receiver: HttpReceiver, secrets_dir: Path) -> None:
    secret_url = receiver.url_for("/gate?token=s3cr3t")
    (secrets_dir / "hooks.yaml").write_text(f"gate: {secret_url}\n")
    receiver.script(ScriptedResponse(status=403, body=f"denied for {secret_url}"))

    result = await run_webhook(webhook("secret:hooks/gate"))

    assert not result.ok
    assert "s3cr3t" not in result.message
    assert result.message == "denied for secret:hooks/gate"


@pytest.mark.parametrize(
    ("files", "url", "expected"),
    [
        ({}, "secret:hooks/gate", "secret test/hooks not found"),
        (
            {"hooks.yaml": "other: http://127.0.0.1:9/?token=s3cr3t\n"},
            "secret:hooks/gate",
            "has no key 'gate'",
        ),
        ({"hooks.yaml": "- s3cr3t\n"}, "secret:hooks/gate", "must hold a mapping"),
        ({}, "secret:hooks", "expected secret:<name>/<key>"),
    ],
)
async def test_secret_problems_are_results_naming_the_secret_not_its_value(
    secrets_dir: Path, files: dict[str, str], url: str, expected: str
) -> None:
    for name, content in files.items():
        (secrets_dir / name).write_text(content)

    result = await run_webhook(webhook(url))

    assert not result.ok
    assert result.attempts == 0
    assert expected in result.message
    assert "s3cr3t" not in result.message


async def test_secret_url_without_secrets_dir_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYFLOW_SECRETS_DIR", raising=False)

    result = await run_webhook(webhook("secret:hooks/gate"))

    assert not result.ok
    assert "CANARYFLOW_SECRETS_DIR is not set" in result.message


# --- pure helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_index", "expected_seconds"),
    [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (100, 30)],
)
def test_default_backoff_doubles_from_1s_up_to_30s(retry_index: int, expected_seconds: float) -> None:
    assert retry_wait_seconds(retry_index, 500, None, Backoff()) == expected_seconds


@pytest.mark.parametrize(
    ("status", "header", "expected_seconds"),
    [
        (429, "7", 7),
        (503, "7", 7),
        (429, "120", 30),  # capped so the activity timeout stays a bound
        (500, "7", 2),  # Retry-After is only honoured on 429 and 503
        (429, "soon", 2),
        (429, "-3", 2),
    ],
)
def test_retry_after_on_429_and_503(status: int, header: str, expected_seconds: float) -> None:
    assert retry_wait_seconds(1, status, header, Backoff()) == expected_seconds


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    in_five_seconds = format_datetime(now + timedelta(seconds=5), usegmt=True)
    in_the_past = format_datetime(now - timedelta(seconds=5), usegmt=True)

    assert parse_retry_after(in_five_seconds, now=now.timestamp()) == 5
    assert parse_retry_after(in_the_past, now=now.timestamp()) == 0


def test_activity_timeout_covers_every_attempt_timing_out_and_every_wait_at_the_maximum() -> None:
    bound = webhook_activity_timeout(webhook("http://hook", timeout_seconds=5, retries=2))

    # 3 attempts of 5 s + 2 waits of 30 s (a Retry-After may ask for the maximum) + 10 s margin
    assert bound == timedelta(seconds=85)


def test_activity_timeout_uses_flaggers_10s_default_for_a_missing_timeout() -> None:
    bound = webhook_activity_timeout(webhook("http://hook", timeout_seconds=0, retries=0))

    assert bound == timedelta(seconds=20)
