"""The webhook activity: Flagger's `callWebhook` (pkg/controller/webhook.go) over httpx.

Semantics kept from Flagger and hashicorp go-retryablehttp v0.7.8 (DefaultRetryPolicy, DefaultBackoff):
- POST `payload` as JSON; the hook passed iff the final HTTP status is <= 202 (so 204 fails).
- `retries` extra attempts on transport errors (connection refused, timeouts, resets), 429, and 5xx
  except 501. TLS verification failures, bad URLs and redirect loops are not retried.
- Wait before retry i (0-based): min(2**i * 1 s, 30 s), or the Retry-After header of a 429/503.
- `timeout_seconds` bounds each attempt as a whole (connect, send, read the answer).
- When the last attempt failed for a retryable reason or a transport error, the message says
  "giving up after N attempt(s)"; a non-retryable status fails with the response body as message.

Deliberate differences: a Retry-After longer than 30 s is capped at 30 s so `webhook_activity_timeout` stays
a true bound; messages never contain the URL (it may carry a token); the body of the last retryable answer is
kept in the message (retryablehttp drops it); `secret:<name>/<key>` URLs are read from local secrets.
A failing webhook is a result (`ok=False`), never an exception: the workflow decides what it means.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime

import httpx
from temporalio import activity

from activities.contracts import ACT_WEBHOOK_CALL, WebhookCall, WebhookResult
from activities.secrets import SecretError, read_secret_key

# Flagger's retry waits (go-retryablehttp defaults). Tests lower RETRY_WAIT_MIN_SECONDS to avoid real sleeps.
RETRY_WAIT_MIN_SECONDS = 1.0
RETRY_WAIT_MAX_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 10.0  # Flagger's default when the hook's timeout is missing
MAX_REDIRECTS = 10  # Go's net/http limit
MESSAGE_LIMIT_CHARS = 1024
BODY_READ_LIMIT_BYTES = 64 * 1024
HEARTBEAT_EVERY_SECONDS = 5.0  # while waiting between attempts, so a cancelled activity stops promptly
ACTIVITY_TIMEOUT_MARGIN_SECONDS = 10.0
SECRET_URL_PREFIX = "secret:"


@dataclass(frozen=True)
class Backoff:
    wait_min_seconds: float = RETRY_WAIT_MIN_SECONDS
    wait_max_seconds: float = RETRY_WAIT_MAX_SECONDS


@dataclass(frozen=True)
class _Attempt:
    """The outcome of one HTTP attempt."""

    status_code: int | None = None
    body: str = ""
    retry_after_header: str | None = None
    error: str = ""  # transport error; empty when an HTTP answer arrived
    retryable: bool = False


def is_retryable_status(status_code: int) -> bool:
    """go-retryablehttp's DefaultRetryPolicy for answers: 429, 5xx except 501, and invalid codes."""
    if status_code == 429:
        return True
    return status_code == 0 or (status_code >= 500 and status_code != 501)


def retry_wait_seconds(
    retry_index: int, status_code: int | None, retry_after_header: str | None, backoff: Backoff
) -> float:
    """Seconds to wait before retry `retry_index` (0 = first retry): go-retryablehttp's DefaultBackoff."""
    if status_code in (429, 503) and retry_after_header is not None:
        retry_after = parse_retry_after(retry_after_header)
        if retry_after is not None:
            return min(retry_after, backoff.wait_max_seconds)
    exponential = math.ldexp(backoff.wait_min_seconds, retry_index) if retry_index < 64 else math.inf
    return min(exponential, backoff.wait_max_seconds)


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if unparseable or negative."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    if value.startswith("-") and value[1:].isdigit():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    remaining = when.timestamp() - (time.time() if now is None else now)
    return max(remaining, 0.0)


def effective_timeout_seconds(call: WebhookCall) -> float:
    return call.timeout_seconds if call.timeout_seconds > 0 else DEFAULT_TIMEOUT_SECONDS


def webhook_activity_timeout(call: WebhookCall) -> timedelta:
    """A start_to_close timeout the activity cannot exceed: every attempt times out, every wait is maximal.

    Use it with a RetryPolicy of one attempt: retries happen inside the activity.
    """
    retries = max(call.retries, 0)
    attempts_seconds = (retries + 1) * effective_timeout_seconds(call)
    # Any wait may come from a Retry-After header: it is capped at the maximum wait, not the exponential one.
    waits_seconds = retries * RETRY_WAIT_MAX_SECONDS
    return timedelta(seconds=attempts_seconds + waits_seconds + ACTIVITY_TIMEOUT_MARGIN_SECONDS)


@activity.defn(name=ACT_WEBHOOK_CALL)
async def call_webhook(call: WebhookCall) -> WebhookResult:
    """POST the payload to the hook with Flagger's retry rules; report the outcome, never raise for it."""
    backoff = Backoff(RETRY_WAIT_MIN_SECONDS, RETRY_WAIT_MAX_SECONDS)
    return await post_webhook(call, backoff=backoff, on_wait=activity.heartbeat)


async def post_webhook(
    call: WebhookCall, *, backoff: Backoff | None = None, on_wait: Callable[[str], None] | None = None
) -> WebhookResult:
    """The activity's body, usable outside an activity. `on_wait` hears why and how long we wait to retry."""
    backoff = backoff or Backoff()
    try:
        url, url_label = resolve_webhook_url(call)
    except SecretError as error:
        return WebhookResult(ok=False, message=f"webhook {call.name}: {error}", attempts=0)

    timeout_seconds = effective_timeout_seconds(call)
    max_attempts = max(call.retries, 0) + 1
    attempt = _Attempt()
    attempts_made = 0
    scrub = _scrubber(url, url_label)
    async with httpx.AsyncClient(
        verify=not call.disable_tls,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=httpx.Timeout(timeout_seconds),
    ) as client:
        for attempt_index in range(max_attempts):
            attempts_made = attempt_index + 1
            attempt = await _attempt_once(client, url, call, timeout_seconds)
            if not attempt.retryable or attempts_made == max_attempts:
                break
            wait = retry_wait_seconds(attempt_index, attempt.status_code, attempt.retry_after_header, backoff)
            reason = scrub(_describe_failure(attempt))
            await _wait_with_heartbeats(
                wait,
                f"attempt {attempts_made}/{max_attempts} failed: {reason}; retrying in {wait:g}s",
                on_wait,
            )
    return _result(attempt, attempts_made, scrub=scrub)


def resolve_webhook_url(call: WebhookCall) -> tuple[str, str]:
    """Return (url to call, label safe to show); `secret:<name>/<key>` is read in the canary's namespace."""
    if not call.url.startswith(SECRET_URL_PREFIX):
        return call.url, call.url
    reference = call.url[len(SECRET_URL_PREFIX) :]
    name, _, key = reference.partition("/")
    if not name or not key:
        raise SecretError(f"invalid secret URL reference {call.url!r}: expected secret:<name>/<key>")
    namespace = call.payload.get("namespace")
    url = read_secret_key(name, key, namespace if isinstance(namespace, str) and namespace else None)
    return url.strip(), call.url


async def _attempt_once(client: httpx.AsyncClient, url: str, call: WebhookCall, timeout: float) -> _Attempt:
    try:
        # httpx's timeout is per network operation; asyncio's bounds the attempt like Go's Client.Timeout.
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=call.payload) as response:
                body = await _read_limited(response)
    except (TimeoutError, httpx.TimeoutException):
        return _Attempt(error=f"timed out after {timeout:g}s", retryable=True)
    except httpx.TooManyRedirects:
        return _Attempt(error=f"stopped after {MAX_REDIRECTS} redirects", retryable=False)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
        return _Attempt(error=f"invalid webhook URL: {error}", retryable=False)
    except httpx.TransportError as error:
        return _Attempt(error=_transport_error_text(error), retryable=not _is_certificate_error(error))
    status = response.status_code
    return _Attempt(
        status_code=status,
        body=body,
        retry_after_header=response.headers.get("Retry-After"),
        retryable=is_retryable_status(status),
    )


async def _read_limited(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_READ_LIMIT_BYTES:
            break
    return b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")


def _error_chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_certificate_error(error: BaseException) -> bool:
    return any(isinstance(cause, ssl.SSLCertVerificationError) for cause in _error_chain(error))


def _transport_error_text(error: httpx.TransportError) -> str:
    text = str(error) or type(error).__name__
    if _is_certificate_error(error):
        return f"TLS certificate verification failed (set disableTLS to skip it): {text}"
    if any(isinstance(cause, ConnectionRefusedError) for cause in _error_chain(error)):
        return "connection refused"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect: {text}"
    return f"{type(error).__name__}: {text}"


async def _wait_with_heartbeats(seconds: float, detail: str, on_wait: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if on_wait is not None:
            on_wait(detail)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, HEARTBEAT_EVERY_SECONDS))


def _scrubber(url: str, url_label: str) -> Callable[[str], str]:
    """Hide a URL read from a secret if an error text or an echoing hook repeats it."""
    if not url or url == url_label:
        return lambda text: text
    return lambda text: text.replace(url, url_label)


def _describe_failure(attempt: _Attempt) -> str:
    if attempt.status_code is None:
        return attempt.error
    body = _trim(attempt.body)
    return f"HTTP {attempt.status_code}: {body}" if body else f"HTTP {attempt.status_code}"


def _result(attempt: _Attempt, attempts_made: int, scrub: Callable[[str], str]) -> WebhookResult:
    status = attempt.status_code
    if status is not None and status <= 202:
        return WebhookResult(ok=True, status_code=status, message=scrub(_trim(attempt.body)), attempts=attempts_made)
    if attempt.retryable or status is None:
        message = f"giving up after {attempts_made} attempt(s): {_describe_failure(attempt)}"
    else:
        body = _trim(attempt.body)
        message = body or f"HTTP {status}: Flagger's webhook contract accepts only status codes <= 202"
    return WebhookResult(ok=False, status_code=status, message=scrub(message), attempts=attempts_made)


def _trim(text: str) -> str:
    text = text.strip()
    if len(text) <= MESSAGE_LIMIT_CHARS:
        return text
    return text[:MESSAGE_LIMIT_CHARS] + "…"
