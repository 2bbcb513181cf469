"""Flagger's CloudWatch metric provider (MetricTemplate `provider.type: cloudwatch`), through boto3.

The query is a JSON array of `MetricDataQuery` objects (`Id`, `Expression`, `MetricStat`, `ReturnData`...; key
case is free, as in Flagger's Go decoding). It runs as `GetMetricData` in `provider.region` over the last ten
metric intervals (`StartTime = now - 10 x interval`, `EndTime = now`, `MaxDatapoints = 20`), 5 s timeouts; the
window is not shrunk to the last route change, since the query's own `Period` does the averaging. The value is
the first value of the first result (newest first, CloudWatch's default order); no result or no values means
"no values" (None). `is_online` sends an empty query: an answer, even a 400, means reachable and authorized.

Credentials come from the AWS default chain (environment, shared profile, web identity / IRSA, instance role);
they need `cloudwatch:GetMetricData`. No secretRef. `provider.address`, when set, overrides the endpoint URL
(a VPC endpoint, or a local stand-in); Flagger itself has no such setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_METRIC_QUERY_INVALID, MetricQuery
from activities.metrics.common import (
    LOOKBACK_INTERVALS,
    QUERY_TIMEOUT_SECONDS,
    auth_failed,
    describe,
    display_address,
    excerpt,
    http_address,
    interval_seconds,
    invalid_spec,
    query_failed,
    query_invalid,
    template_of,
    timed_out,
    unavailable,
    unreachable,
)
from canaryflow.spec import MetricTemplate

PROVIDER = "cloudwatch"
MAX_DATAPOINTS = 20

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "NotAuthorized",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"})


@dataclass(frozen=True)
class _Target:
    region: str
    endpoint_url: str | None
    verify_tls: bool
    service: str  # "CloudWatch in <region> (MetricTemplate ns/name)", for messages


class CloudWatchProvider:
    """Runs GetMetricData queries for a MetricTemplate (region, optional address as endpoint, insecureSkipVerify)."""

    def __init__(self, *, timeout_seconds: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    async def run_query(self, query: MetricQuery, rendered: str) -> float | None:
        template = template_of(query, PROVIDER)
        target = _target(template)
        metric_queries = _metric_data_queries(target, rendered)
        window = timedelta(seconds=LOOKBACK_INTERVALS * interval_seconds(query.interval, template))
        end = datetime.now(UTC)
        response = await asyncio.to_thread(
            self._get_metric_data,
            target,
            MetricDataQueries=metric_queries,
            StartTime=end - window,
            EndTime=end,
            MaxDatapoints=MAX_DATAPOINTS,
        )
        return _first_value(target, response)

    async def is_online(self, query: MetricQuery) -> bool:
        target = _target(template_of(query, PROVIDER))
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        # A 400 for the empty query means reachable, and the credentials were accepted.
        with contextlib.suppress(_Rejected):
            await asyncio.to_thread(self._get_metric_data, target, MetricDataQueries=[], StartTime=epoch, EndTime=epoch)
        return True

    def _get_metric_data(self, target: _Target, **request: Any) -> Any:
        session = _session()
        client = session.client(
            "cloudwatch",
            region_name=target.region,
            endpoint_url=target.endpoint_url,
            verify=target.verify_tls,
            config=Config(
                connect_timeout=self.timeout_seconds,
                read_timeout=self.timeout_seconds,
                retries={"total_max_attempts": 1},  # retries belong to the activity's retry policy
            ),
        )
        try:
            return client.get_metric_data(**request)
        except botocore.exceptions.ClientError as error:
            raise _client_error(target, error, _credential_values(session)) from None
        except botocore.exceptions.ParamValidationError as error:
            raise query_invalid(
                f"{target.service}: the query does not fit GetMetricData: {excerpt(str(error))}"
            ) from None
        except (
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.ProfileNotFound,
        ):
            raise auth_failed(
                f"{target.service}: no AWS credentials found; give the worker credentials through the default chain "
                "(environment, profile, web identity / IRSA or instance role) allowed cloudwatch:GetMetricData"
            ) from None
        except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
            raise timed_out(target.service, self.timeout_seconds) from None
        except botocore.exceptions.HTTPClientError as error:
            raise unreachable(target.service, error) from None
        except botocore.exceptions.CredentialRetrievalError as error:
            # e.g. STS or the instance metadata service failing to hand out web identity / role credentials
            raise unavailable(f"{target.service}: {excerpt(str(error))}") from None
        except (botocore.exceptions.ResponseParserError, ValueError, KeyError, TypeError):
            raise _not_cloudwatch(target) from None
        finally:
            client.close()


class _Rejected(ApplicationError):
    """A 400 answer that is neither an auth failure nor throttling: the query itself was refused."""


def _target(template: MetricTemplate) -> _Target:
    settings = template.spec.provider
    if not settings.region:
        raise invalid_spec(f"{describe(template)}: the cloudwatch provider needs `provider.region`")
    endpoint = http_address(settings.address, None, template, PROVIDER) if settings.address else None
    where = f"{display_address(endpoint)} ({settings.region})" if endpoint else settings.region
    return _Target(
        region=settings.region,
        endpoint_url=endpoint,
        verify_tls=not settings.insecure_skip_verify,
        service=f"CloudWatch in {where} ({describe(template)})",
    )


def _metric_data_queries(target: _Target, rendered: str) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(rendered)
    except ValueError as error:
        raise query_invalid(
            f"{target.service}: the query is not JSON ({error}); write a MetricDataQuery array"
        ) from None
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise query_invalid(f"{target.service}: the query must be a JSON array of MetricDataQuery objects")
    member_shape = _metric_data_query_shape()
    return [_with_model_keys(target, item, member_shape, "MetricDataQueries[]") for item in parsed]


@functools.cache
def _data_loader() -> Any:
    """One loader for every session: parsing botocore's service models is most of a client's start-up cost."""
    return botocore.loaders.create_loader()


def _botocore_session() -> botocore.session.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", _data_loader())
    return core


def _session() -> boto3.session.Session:
    """A fresh session per query, so credentials are resolved through the default chain each time."""
    return boto3.session.Session(botocore_session=_botocore_session())


@functools.cache
def _metric_data_query_shape() -> Any:
    model = _botocore_session().get_service_model("cloudwatch")
    return model.operation_model("GetMetricData").input_shape.members["MetricDataQueries"].member


def _with_model_keys(target: _Target, value: Any, shape: Any, path: str) -> Any:
    """`value` with object keys spelled as in the AWS model, matched case-insensitively like Go's decoder."""
    if shape.type_name == "structure" and isinstance(value, dict):
        names = {name.lower(): name for name in shape.members}
        result: dict[str, Any] = {}
        for key, item in value.items():
            name = names.get(str(key).lower())
            if name is None:
                known = ", ".join(shape.members)
                raise query_invalid(f"{target.service}: unknown field {path}.{key} in the query (known: {known})")
            result[name] = _with_model_keys(target, item, shape.members[name], f"{path}.{name}")
        return result
    if shape.type_name == "list" and isinstance(value, list):
        return [_with_model_keys(target, item, shape.member, f"{path}[]") for item in value]
    return value


def _first_value(target: _Target, response: Any) -> float | None:
    results = response.get("MetricDataResults") if isinstance(response, dict) else None
    if results is None:
        raise _not_cloudwatch(target)
    if not results:
        return None
    values = results[0].get("Values") or []
    if not values:
        return None
    return float(values[0])


def _client_error(target: _Target, error: botocore.exceptions.ClientError, secrets: Iterable[str]) -> ApplicationError:
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = excerpt(str(details.get("Message") or code or "no message"), secrets)
    if code in _AUTH_CODES or status in (401, 403):
        return auth_failed(
            f"{target.service} refused the AWS credentials (HTTP {status} {code}: {message}); the worker's "
            "default-chain credentials (environment, profile, web identity / IRSA or instance role) need "
            f"cloudwatch:GetMetricData in {target.region}"
        )
    if code in _THROTTLING_CODES or status >= 500 or status == 429:
        return unavailable(f"{target.service} answered HTTP {status} {code}: {message}")
    if status == 400:
        return _Rejected(
            f"{target.service} rejected the query (HTTP 400 {code}: {message})",
            type=ERR_METRIC_QUERY_INVALID,
            non_retryable=True,
        )
    return query_failed(f"{target.service} answered HTTP {status} {code}: {message}; check provider.address")


def _credential_values(session: boto3.session.Session) -> list[str]:
    """The resolved key id and secret, only to scrub them from details quoted in messages."""
    try:
        credentials = session.get_credentials()
    except botocore.exceptions.BotoCoreError:
        return []
    if credentials is None:
        return []
    frozen = credentials.get_frozen_credentials()
    return [value for value in (frozen.access_key, frozen.secret_key, frozen.token) if value]


def _not_cloudwatch(target: _Target) -> ApplicationError:
    return query_failed(
        f"{target.service} did not answer like the CloudWatch API (no MetricDataResults); check provider.address"
    )
