"""What the MetricTemplate providers share: the template, its secretRef, windows, transport and typed errors.

Errors use the ApplicationError types of the Prometheus provider. Every message names the provider and the
template and says what to fix; `scrub` removes any secret value that a server may have echoed into a detail.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import httpx
import urllib3
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    ERR_INVALID_SPEC,
    ERR_METRIC_AUTH_FAILED,
    ERR_METRIC_QUERY_FAILED,
    ERR_METRIC_QUERY_INVALID,
    ERR_METRIC_SERVER_UNAVAILABLE,
    MetricQuery,
)
from activities.secrets import SecretError, read_secret
from canaryflow.durations import parse_duration
from canaryflow.spec import MetricTemplate

QUERY_TIMEOUT_SECONDS = 5.0
DETAIL_LIMIT = 300
LOOKBACK_INTERVALS = 10  # Flagger's CloudWatch, Datadog, Dynatrace and Splunk providers look back ten intervals

RETRYABLE_STATUS = frozenset({408, 429})
_OS_ERROR_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_WHITESPACE = re.compile(r"\s+")


def template_of(query: MetricQuery, provider: str) -> MetricTemplate:
    """The query's MetricTemplate; these providers have no builtin metrics, so one is required."""
    if query.template is None:
        raise invalid_spec(f"metric {query.metric_name} has no templateRef; the {provider} provider needs one")
    return query.template


def describe(template: MetricTemplate) -> str:
    return f"MetricTemplate {template.metadata.namespace}/{template.metadata.name}"


def secret_label(template: MetricTemplate) -> str:
    """`<namespace>/<name>` of the template's secretRef (the secret lives in the template's namespace)."""
    secret_ref = template.spec.provider.secret_ref
    name = secret_ref.name if secret_ref is not None else "?"
    return f"{template.metadata.namespace}/{name}"


def template_credentials(
    template: MetricTemplate, provider: str, required_keys: Sequence[str], *, secret_required: bool
) -> dict[str, str]:
    """The template's secret, checked to hold `required_keys`; {} when there is no secretRef and none is needed."""
    secret_ref = template.spec.provider.secret_ref
    keys = ", ".join(f"`{key}`" for key in required_keys)
    if secret_ref is None:
        if secret_required:
            raise auth_failed(
                f"{describe(template)}: the {provider} provider needs `secretRef` naming a secret with {keys}"
            )
        return {}
    try:
        credentials = read_secret(secret_ref.name, template.metadata.namespace)
    except SecretError as error:
        raise auth_failed(f"{describe(template)}: cannot read its secretRef for {provider}: {error}") from None
    missing = [key for key in required_keys if key not in credentials]
    if missing:
        absent = ", ".join(f"`{key}`" for key in missing)
        raise auth_failed(
            f"{describe(template)}: secret {secret_label(template)} has no {absent}; the {provider} provider "
            f"reads {keys} from it"
        )
    return credentials


def service_label(product: str, address: str, template: MetricTemplate) -> str:
    """`<product> at <address> (MetricTemplate ns/name, secret ns/name)`, the secret only when there is a secretRef."""
    label = f"{product} at {display_address(address)} ({describe(template)}"
    if template.spec.provider.secret_ref is not None:
        label += f", secret {secret_label(template)}"
    return label + ")"


def http_address(address: str | None, default: str | None, template: MetricTemplate, provider: str) -> str:
    """The provider address without a trailing slash; `default` when unset, else an InvalidSpec error."""
    chosen = address or default
    if not chosen:
        raise invalid_spec(f"{describe(template)}: the {provider} provider needs `provider.address`")
    parts = urlsplit(chosen)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_spec(f"{describe(template)}: provider.address {chosen!r} is not an http(s) URL")
    return chosen.rstrip("/")


def display_address(address: str) -> str:
    """The address without any user:password part or query, for messages."""
    parts = urlsplit(address)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def interval_seconds(interval: str, template: MetricTemplate) -> float:
    try:
        return parse_duration(interval.strip())
    except ValueError as error:
        raise invalid_spec(f"{describe(template)}: metric interval: {error}") from None


def lookback_window_ms(query: MetricQuery, template: MetricTemplate) -> tuple[int, int]:
    """`(from, to)` in epoch milliseconds: the last LOOKBACK_INTERVALS metric intervals."""
    end = int(time.time() * 1000)
    return end - int(LOOKBACK_INTERVALS * interval_seconds(query.interval, template) * 1000), end


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every (non-trivial) secret value replaced, for details quoted from a server's answer."""
    for value in secrets:
        if len(value) >= 4:
            text = text.replace(value, "<redacted>")
    return text


def excerpt(text: str | bytes | None, secrets: Iterable[str] = ()) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return scrub(collapse_whitespace(text or ""), secrets)[:DETAIL_LIMIT] or "no body"


def transport_reason(error: BaseException) -> str:
    """A short reason for a connection failure ("Connection refused"), never the request it carried."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # the OS error is often a cause a few levels down
        seen.add(id(current))
        if isinstance(current, OSError) and isinstance(current.errno, int) and current.errno > 0:
            return os.strerror(current.errno)
        if match := _OS_ERROR_REASON.search(str(current)):
            return match.group(1).strip()
        current = current.__cause__ or current.__context__
    return type(error).__name__


def timed_out(service: str, timeout_seconds: float) -> ApplicationError:
    return unavailable(f"{service} did not answer within {timeout_seconds:g}s; the query is retried")


def unreachable(service: str, error: BaseException) -> ApplicationError:
    return unavailable(f"cannot reach {service}: {transport_reason(error)}")


async def http_get(
    url: str,
    *,
    service: str,
    timeout_seconds: float,
    verify_tls: bool,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    headers: dict[str, str] | None = None,
    basic_auth: tuple[str, str] | None = None,
) -> httpx.Response:
    """One GET to `service`, any status; a timeout or a connection failure becomes a retryable unavailable error."""
    try:
        async with httpx.AsyncClient(verify=verify_tls, timeout=timeout_seconds, auth=basic_auth) as client:
            return await client.get(
                url, params=params if isinstance(params, Mapping) else tuple(params), headers=headers
            )
    except httpx.TimeoutException:
        raise timed_out(service, timeout_seconds) from None
    except httpx.TransportError as error:
        raise unreachable(service, error) from None
    except httpx.DecodingError:
        raise undecodable(service) from None


@asynccontextmanager
async def http_post_stream(
    url: str,
    *,
    service: str,
    timeout_seconds: float,
    verify_tls: bool,
    params: Mapping[str, str],
    content: str,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """One POST to `service` whose answer (any status) is read while it streams in, inside the `async with` block.

    `timeout_seconds` bounds the whole exchange, reading included, not only each network step: a stream that
    keeps the connection alive without finishing times out too. Errors are those of `http_get`.
    """
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            httpx.AsyncClient(verify=verify_tls, timeout=timeout_seconds) as client,
            client.stream("POST", url, params=params, content=content, headers=headers) as response,
        ):
            yield response
    except (TimeoutError, httpx.TimeoutException):
        raise timed_out(service, timeout_seconds) from None
    except httpx.TransportError as error:
        raise unreachable(service, error) from None
    except httpx.DecodingError:
        raise undecodable(service) from None


def json_error_detail(response: httpx.Response, *path: str) -> str:
    """The string at `path` in a JSON error body (e.g. `"error", "message"`), else the start of the body."""
    try:
        found: object = response.json()
    except ValueError:
        found = None
    for key in path:
        found = found.get(key) if isinstance(found, dict) else None
    if isinstance(found, str):
        return found
    return response.text.strip()[:200] or response.reason_phrase or "no body"


def undecodable(service: str) -> ApplicationError:
    """A body that does not match its Content-Encoding: a proxy or another server in between, not the service."""
    return query_failed(f"{service} answered with a body that cannot be decoded; check provider.address")


@contextmanager
def urllib3_transport_errors(service: str, timeout_seconds: float) -> Iterator[None]:
    """Turns the urllib3 failures of a client library's call to `service` into retryable unavailable errors."""
    try:
        yield
    except urllib3.exceptions.NewConnectionError as error:  # a ConnectTimeoutError subclass: before it
        raise unreachable(service, error) from None
    except urllib3.exceptions.TimeoutError:
        raise timed_out(service, timeout_seconds) from None
    except urllib3.exceptions.HTTPError as error:
        raise unreachable(service, error) from None


def http_error(
    status: int, *, service: str, detail: str, query: str, auth_hint: str, invalid_status: Iterable[int] = (400, 422)
) -> ApplicationError:
    """The typed error for a non-2xx answer. `service` names the provider, its address and the template."""
    if status in (401, 403):
        return auth_failed(f"{service} refused the credentials (HTTP {status}: {detail}); {auth_hint}")
    if status in set(invalid_status):
        return query_invalid(f"{service} rejected the query (HTTP {status}: {detail}): {query}")
    if status >= 500 or status in RETRYABLE_STATUS:
        return unavailable(f"{service} answered HTTP {status}: {detail}")
    return query_failed(f"{service} answered HTTP {status}: {detail}; check provider.address")


def auth_failed(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_METRIC_AUTH_FAILED, non_retryable=True)


def query_invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_METRIC_QUERY_INVALID, non_retryable=True)


def query_failed(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_METRIC_QUERY_FAILED, non_retryable=True)


def unavailable(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_METRIC_SERVER_UNAVAILABLE)


def invalid_spec(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_INVALID_SPEC, non_retryable=True)
