"""Pydantic models of Flagger's `flagger.app/v1beta1` Canary, MetricTemplate and AlertProvider.

Python attributes are snake_case; YAML/JSON keys are Flagger's camelCase, so Flagger manifests validate
unchanged and `model_dump(by_alias=True, exclude_none=True)` gives Flagger-shaped documents back.
`canaryflow.dev/v1beta1` is accepted wherever `flagger.app/v1beta1` is.

The models are plain data: they travel through Temporal workflow history and are imported inside the workflow
sandbox, so this module does no I/O and keeps no mutable module state.

Rule violations found by validators are raised as `PydanticCustomError` of type `SPEC_RULE_ERROR` whose
context carries a `fix` hint; `canaryflow.loader` turns them (and pydantic's own errors) into `SpecIssue`s.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from canaryflow.durations import parse_duration as _go_duration

FLAGGER_API_VERSION = "flagger.app/v1beta1"
CANARYFLOW_API_VERSION = "canaryflow.dev/v1beta1"
API_VERSIONS: tuple[str, ...] = (FLAGGER_API_VERSION, CANARYFLOW_API_VERSION)

# Flagger's CRD enum for spec.provider, plus our local platform router.
MESH_PROVIDERS: tuple[str, ...] = (
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kubernetes",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
    "haproxy",
)
# Flagger's router factory also accepts an SMI provider naming the mesh, e.g. `smi:v1alpha3:linkerd`.
_SMI_WITH_MESH = re.compile(r"^smi:v1alpha[123]:[a-z0-9][a-z0-9-]*$")

TARGET_KINDS: tuple[str, ...] = ("Deployment", "DaemonSet", "Service", "LocalApp")
AUTOSCALER_KINDS: tuple[str, ...] = ("HorizontalPodAutoscaler", "ScaledObject")
METRIC_PROVIDER_TYPES: tuple[str, ...] = (
    "prometheus",
    "influxdb",
    "datadog",
    "externalmetrics",
    "stackdriver",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
)
ALERT_PROVIDER_TYPES: tuple[str, ...] = ("slack", "msteams", "discord", "rocket", "gchat")
BUILTIN_METRICS: tuple[str, ...] = ("request-success-rate", "request-duration")
TRAFFIC_DISTRIBUTIONS: tuple[str, ...] = ("PreferClose", "PreferSameZone", "PreferSameNode")

SPEC_RULE_ERROR = "canaryflow_spec_rule"

# Flagger's CRD pattern for durations (deliberately unanchored at the end, as in the CRD) ...
_FLAGGER_DURATION_PREFIX = re.compile(r"^[0-9]+(m|s)")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# ----------------------------------------------------------------------------------------------------
# Helpers shared by validators


def rule_error(message: str, fix: str) -> PydanticCustomError:
    """An error for a broken spec rule; `fix` tells the user what to write instead."""
    return PydanticCustomError(SPEC_RULE_ERROR, "{message}", {"message": message, "fix": fix})


class _Problems:
    """Collects several rule violations of one object so the user sees all of them at once."""

    def __init__(self, title: str) -> None:
        self._title = title
        self._details: list[InitErrorDetails] = []

    def add(self, loc: tuple[str | int, ...], value: Any, message: str, fix: str) -> None:
        self._details.append(InitErrorDetails(type=rule_error(message, fix), loc=loc, input=value))

    def raise_if_any(self) -> None:
        if self._details:
            raise ValidationError.from_exception_data(self._title, self._details)


def closest(value: str, choices: Iterable[str]) -> str | None:
    """The choice the user most likely meant (case-insensitive match first, then difflib), or None."""
    options = list(choices)
    lowered = {choice.lower(): choice for choice in options}
    if value.lower() in lowered:
        return lowered[value.lower()]
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """` Did you mean `x`?` or an empty string when nothing is close."""
    match = closest(value, choices)
    return f" Did you mean `{match}`?" if match else ""


def _one_of(value: str, choices: Sequence[str], what: str) -> str:
    if value in choices:
        return value
    raise rule_error(
        f"unknown {what} `{value}`",
        f"use one of: {', '.join(choices)}.{did_you_mean(value, choices)}".rstrip(),
    )


def is_duration(text: str) -> bool:
    """True when `text` passes Flagger's CRD pattern and Go's duration parser."""
    if not _FLAGGER_DURATION_PREFIX.match(text):
        return False
    try:
        _go_duration(text)
    except ValueError:
        return False
    return True


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string (`30s`, `1m30s`, `500ms`); raises ValueError if it is not one."""
    return timedelta(seconds=_go_duration(text))


def _check_duration(text: str) -> str:
    if not is_duration(text):
        raise rule_error(
            f"`{text}` is not a valid duration",
            "write a whole number followed by `s` or `m`, e.g. `30s`, `1m` or `1m30s`",
        )
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]


def _check_dns_subdomain(text: str) -> str:
    if len(text) > 253 or not _DNS_SUBDOMAIN.match(text):
        raise rule_error(
            f"`{text}` is not a valid Kubernetes object name",
            "use lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit",
        )
    return text


def _check_dns_label(text: str) -> str:
    if len(text) > 63 or not _DNS_LABEL.match(text):
        raise rule_error(
            f"`{text}` is not a valid Kubernetes namespace",
            "use at most 63 lower-case letters, digits and `-`, starting and ending with a letter or digit",
        )
    return text


def _check_api_version(value: str) -> str:
    if value not in API_VERSIONS:
        raise rule_error(
            f"unsupported apiVersion `{value}`",
            f"use `{FLAGGER_API_VERSION}` (or `{CANARYFLOW_API_VERSION}`)",
        )
    return value


def _drop_status(data: Any) -> Any:
    # kubectl exports carry a status subresource; it is observed state, not configuration.
    if isinstance(data, dict) and "status" in data:
        return {key: value for key, value in data.items() if key != "status"}
    return data


Percent = Annotated[int, Field(ge=0, le=100)]
StepPercent = Annotated[int, Field(ge=1, le=100)]


class SpecModel(BaseModel):
    """Base of every typed object: camelCase keys, snake_case attributes, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


# ----------------------------------------------------------------------------------------------------
# Metadata and references


class ObjectMeta(SpecModel):
    # kubectl exports add uid, resourceVersion, managedFields...: ignored rather than rejected.
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, AfterValidator(_check_dns_subdomain)]
    namespace: Annotated[str, AfterValidator(_check_dns_label)] = "default"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class TargetRef(SpecModel):
    api_version: str | None = None
    kind: str
    name: str

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return _one_of(value, TARGET_KINDS, "targetRef kind")

    @property
    def is_knative_service(self) -> bool:
        return self.kind == "Service" and self.api_version == "serving.knative.dev/v1"


class LocalObjectReference(SpecModel):
    api_version: str | None = None
    kind: str | None = None
    name: str


class CrossNamespaceObjectReference(SpecModel):
    api_version: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class ScalerReplicas(SpecModel):
    min_replicas: int | None = Field(None, ge=1)
    max_replicas: int | None = Field(None, ge=1)


class AutoscalerRef(SpecModel):
    api_version: str | None = None
    kind: str
    name: str
    primary_scaler_queries: dict[str, str] = {}
    primary_scaler_replicas: ScalerReplicas | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return _one_of(value, AUTOSCALER_KINDS, "autoscalerRef kind")


class SecretRef(SpecModel):
    name: str


# ----------------------------------------------------------------------------------------------------
# spec.service


class ParentReference(SpecModel):
    """Gateway API ParentReference used in `service.gatewayRefs`."""

    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: int | None = Field(None, ge=1, le=65535)


class HTTPRewrite(SpecModel):
    uri: str | None = None
    authority: str | None = None
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"] | None = None


class CustomMetadata(SpecModel):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class UnmanagedMetadata(SpecModel):
    annotations: list[str] = []
    labels: list[str] = []


class CanaryService(SpecModel):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    port_name: str = "http"
    target_port: int | str | None = None
    app_protocol: str | None = None
    traffic_distribution: str | None = None
    port_discovery: bool = False
    headless: bool = False
    timeout: str | None = None
    backend_timeout: str | None = None
    gateways: list[str] = []
    gateway_refs: list[ParentReference] = []
    hosts: list[str] = []
    delegation: bool = False
    traffic_policy: dict[str, Any] | None = None
    match: list[dict[str, Any]] = []
    rewrite: HTTPRewrite | None = None
    retries: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    mirror: list[dict[str, Any]] = []
    cors_policy: dict[str, Any] | None = None
    mesh_name: str | None = None
    backends: list[str] = []
    apex: CustomMetadata | None = None
    primary: CustomMetadata | None = None
    canary: CustomMetadata | None = None
    unmanaged_metadata: UnmanagedMetadata | None = None

    @field_validator("traffic_distribution")
    @classmethod
    def _known_distribution(cls, value: str | None) -> str | None:
        return None if value is None else _one_of(value, TRAFFIC_DISTRIBUTIONS, "trafficDistribution")


# ----------------------------------------------------------------------------------------------------
# spec.analysis


class WebhookType(StrEnum):
    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


def _webhook_type(value: Any) -> Any:
    if isinstance(value, WebhookType):
        return value
    if value == "":
        return WebhookType.ROLLOUT  # Flagger runs untyped hooks as rollout hooks
    if isinstance(value, str):
        return WebhookType(_one_of(value, [member.value for member in WebhookType], "webhook type"))
    return value


class ThresholdRange(SpecModel):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise rule_error(
                f"thresholdRange.min ({self.min:g}) is greater than thresholdRange.max ({self.max:g})",
                "swap the values or fix one of them so that min <= max",
            )
        return self


class TemplateRef(SpecModel):
    api_version: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class CanaryMetric(SpecModel):
    name: str
    interval: Duration = "1m"
    threshold_range: ThresholdRange | None = None
    threshold: float | None = None
    query: str | None = None
    template_ref: TemplateRef | None = None
    template_variables: dict[str, str] = {}

    @property
    def is_builtin(self) -> bool:
        return self.template_ref is None and not self.query and self.name in BUILTIN_METRICS

    @model_validator(mode="after")
    def _has_a_source(self) -> Self:
        if self.template_ref is None and not self.query and self.name not in BUILTIN_METRICS:
            raise rule_error(
                f"metric `{self.name}` has no templateRef, no query and is not a builtin metric",
                "add `templateRef: {name: <MetricTemplate>}` or use a builtin metric name "
                f"({', '.join(BUILTIN_METRICS)}).{did_you_mean(self.name, BUILTIN_METRICS)}".rstrip(),
            )
        return self


MANUAL_GATE_URL = "manual"
MANUAL_GATE_TYPES = (WebhookType.CONFIRM_ROLLOUT, WebhookType.CONFIRM_TRAFFIC_INCREASE, WebhookType.CONFIRM_PROMOTION)


class CanaryWebhook(SpecModel):
    name: str
    type: Annotated[WebhookType, BeforeValidator(_webhook_type)] = WebhookType.ROLLOUT
    url: str
    timeout: Duration = "10s"
    retries: int = Field(0, ge=0)
    disable_tls: bool = Field(False, alias="disableTLS")
    mute_alert: bool = False
    metadata: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # canaryflow extensions: `secret:<name>/<key>` keeps a tokenized URL out of the spec and the release
        # history (resolved inside the activity); `manual` makes a confirm-* gate wait for `canaryflow approve`.
        if value == MANUAL_GATE_URL or re.match(r"^secret:[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$", value):
            return value
        if not re.match(r"^https?://[^/\s]+", value):
            raise rule_error(
                f"`{value}` is not an http(s) URL",
                "write an absolute URL, e.g. `http://flagger-loadtester.test/`, a secret reference "
                "`secret:<name>/<key>`, or `manual` for a gate opened by `canaryflow approve`",
            )
        return value

    @model_validator(mode="after")
    def _manual_only_for_gates(self) -> Self:
        if self.url == MANUAL_GATE_URL and self.type not in MANUAL_GATE_TYPES:
            raise rule_error(
                f"`url: manual` only works for gate webhooks, not `{self.type.value}`",
                f"use one of the types {', '.join(t.value for t in MANUAL_GATE_TYPES)}, or an http(s) URL",
            )
        return self


class ProviderRef(SpecModel):
    api_version: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class CanaryAlert(SpecModel):
    name: str
    severity: Literal["info", "warn", "error", ""] = ""
    provider_ref: ProviderRef


class SessionAffinity(SpecModel):
    cookie_name: str
    primary_cookie_name: str = ""
    max_age: int = Field(86400, ge=0)
    domain: str | None = None
    http_only: bool = False
    partitioned: bool = False
    path: str | None = None
    same_site: Literal["Strict", "Lax", "None"] | None = None
    secure: bool = False

    @model_validator(mode="after")
    def _distinct_cookies(self) -> Self:
        problems = _Problems("SessionAffinity")
        if not self.cookie_name:
            problems.add(
                ("cookieName",),
                self.cookie_name,
                "cookieName is empty",
                "name the canary cookie, e.g. `cookieName: flagger-cookie`",
            )
        elif self.primary_cookie_name == self.cookie_name:
            problems.add(
                ("primaryCookieName",),
                self.primary_cookie_name,
                f"primaryCookieName and cookieName are both `{self.cookie_name}`",
                f"give the primary cookie a different name, e.g. `primaryCookieName: {self.cookie_name}-primary`",
            )
        problems.raise_if_any()
        return self


_ONE_OF_STRATEGY_KEYS = ("iterations", "stepWeight", "stepWeights")


class CanaryAnalysis(SpecModel):
    interval: Duration
    threshold: int = Field(ge=1)
    iterations: int = Field(0, ge=0)
    max_weight: int | None = Field(None, ge=1, le=100)
    step_weight: Percent = 0
    step_weights: list[StepPercent] = []
    step_weight_promotion: Percent = 0
    mirror: bool = False
    mirror_weight: Percent = 0
    primary_ready_threshold: Percent = 100
    canary_ready_threshold: Percent = 100
    match: list[dict[str, Any]] = []
    session_affinity: SessionAffinity | None = None
    metrics: list[CanaryMetric] = []
    webhooks: list[CanaryWebhook] = []
    alerts: list[CanaryAlert] = []

    @field_validator("step_weights")
    @classmethod
    def _strictly_increasing(cls, weights: list[int]) -> list[int]:
        problems = _Problems("CanaryAnalysis")
        for index in range(1, len(weights)):
            if weights[index] <= weights[index - 1]:
                problems.add(
                    (index,),
                    weights[index],
                    f"stepWeights must be strictly increasing, but {weights[index]} follows {weights[index - 1]}",
                    "list the absolute canary weights in ascending order, e.g. [1, 5, 10, 50]",
                )
        problems.raise_if_any()
        return weights

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        problems = _Problems("CanaryAnalysis")
        chosen = [
            key
            for key, value in zip(
                _ONE_OF_STRATEGY_KEYS, (self.iterations, self.step_weight, self.step_weights), strict=True
            )
            if value
        ]
        if len(chosen) != 1:
            found = ", ".join(f"`{key}`" for key in chosen) if chosen else "none of them"
            problems.add(
                (),
                None,
                f"exactly one of `iterations`, `stepWeight` or `stepWeights` must be set (found {found})",
                "keep `stepWeight` (or `stepWeights`) for a weighted canary release, or `iterations` for "
                "blue/green and A/B testing; remove the others",
            )
        if self.match and not self.iterations:
            problems.add(
                ("match",),
                self.match,
                "A/B testing needs analysis.iterations",
                "set `iterations` (e.g. `iterations: 10`) instead of stepWeight/stepWeights, "
                "or remove `match` for a weighted canary release",
            )
        problems.raise_if_any()
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_strategy(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # Flagger's CRD `oneOf` counts present keys, so the two unused strategy keys must not be written back.
        data = handler(self)
        if isinstance(data, dict):
            names = _ONE_OF_STRATEGY_KEYS if info.by_alias else ("iterations", "step_weight", "step_weights")
            for name in names:
                if name in data and not data[name]:
                    del data[name]
        return data

    @property
    def strategy(self) -> Literal["canary", "blue-green", "ab-testing"]:
        """Flagger's `Canary.DeploymentStrategy` (before the kubernetes-provider coercion)."""
        if self.iterations > 0:
            return "ab-testing" if self.match else "blue-green"
        return "canary"


# ----------------------------------------------------------------------------------------------------
# spec.local (canaryflow extension: the app of a `LocalApp` target, run as local processes)

LOCAL_PLACEHOLDERS: tuple[str, ...] = ("port", "version", "role", "python", "name", "namespace")
# `{name}` is a placeholder and `{{name}}` a literal `{name}`. Braces around anything with a quote or a blank
# (JSON such as `{"v3": {"error_rate": 0.3}}`) are plain text, since env values often hold JSON.
_PLACEHOLDER = re.compile(r"\{\{(\s*[^{}\"'\s]+\s*)\}\}|\{(\s*[^{}\"'\s]+\s*)\}")
_PLACEHOLDER_LIST = ", ".join(f"{{{name}}}" for name in LOCAL_PLACEHOLDERS)


def _unknown_placeholders(text: str) -> list[str]:
    return [
        match.group(2)
        for match in _PLACEHOLDER.finditer(text)
        if match.group(2) is not None and match.group(2) not in LOCAL_PLACEHOLDERS
    ]


def _expand(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        return f"{{{escaped}}}" if escaped is not None else values[match.group(2)]

    return _PLACEHOLDER.sub(replace, text)


def _placeholder_fix(unknown: str) -> str:
    match = closest(unknown.strip(), LOCAL_PLACEHOLDERS)
    hint = f" Did you mean `{{{match}}}`?" if match else ""
    literal = f"`{{{{{unknown}}}}}` for a literal `{{{unknown}}}`"
    return f"use one of {_PLACEHOLDER_LIST}, or write {literal}.{hint}"


TcpPort = Annotated[int, Field(ge=1, le=65535)]


class LocalAppSpec(SpecModel):
    """How to run the app of a `LocalApp` target: one process per role (primary, canary) on its own port."""

    command: list[str]
    version: str
    env: dict[str, str] = {}
    primary_port: TcpPort
    canary_port: TcpPort
    readiness_path: str = "/readyz"
    metrics_path: str = "/metrics"
    router_metrics_port: TcpPort
    working_dir: str | None = None

    @model_validator(mode="after")
    def _well_formed(self) -> Self:
        problems = _Problems("LocalAppSpec")
        if not self.command or not self.command[0]:
            problems.add(
                ("command",),
                self.command,
                "command is empty",
                'write the program and its arguments, e.g. `["{python}", "-m", "canaryflow.demoapp", '
                '"--port", "{port}", "--version", "{version}"]`',
            )
        for index, argument in enumerate(self.command):
            for unknown in _unknown_placeholders(argument):
                where = "" if argument == f"{{{unknown}}}" else f" in `{argument}`"
                problems.add(
                    ("command", index),
                    argument,
                    f"unknown placeholder `{{{unknown}}}`{where}",
                    _placeholder_fix(unknown),
                )
        for key, value in self.env.items():
            if not key or "=" in key or "\0" in key:
                problems.add(
                    ("env", key),
                    key,
                    f"`{key}` is not a valid environment variable name",
                    "use a name without `=`, e.g. `DEMOAPP_BEHAVIOUR`",
                )
            for unknown in _unknown_placeholders(value):
                problems.add(
                    ("env", key),
                    value,
                    f"unknown placeholder `{{{unknown}}}` in the value of `{key}`",
                    _placeholder_fix(unknown),
                )
        if not self.version:
            problems.add(("version",), self.version, "version is empty", "write e.g. `version: v1`")
        if not self.readiness_path.startswith("/"):
            problems.add(
                ("readinessPath",),
                self.readiness_path,
                f"readinessPath `{self.readiness_path}` does not start with `/`",
                "write an absolute HTTP path, e.g. `readinessPath: /readyz`",
            )
        if self.metrics_path and not self.metrics_path.startswith("/"):
            problems.add(
                ("metricsPath",),
                self.metrics_path,
                f"metricsPath `{self.metrics_path}` does not start with `/`",
                'write an absolute HTTP path, e.g. `metricsPath: /metrics`, or `""` if the app exports none',
            )
        problems.raise_if_any()
        return self

    def command_for(self, values: Mapping[str, str]) -> list[str]:
        """`command` with every placeholder replaced; `values` maps each of LOCAL_PLACEHOLDERS to its text."""
        return [_expand(argument, values) for argument in self.command]

    def env_for(self, values: Mapping[str, str]) -> dict[str, str]:
        """`env` with every placeholder in the values replaced (see `command_for`)."""
        return {key: _expand(value, values) for key, value in self.env.items()}


# ----------------------------------------------------------------------------------------------------
# Canary


class CanarySpec(SpecModel):
    provider: str | None = None
    metrics_server: str | None = None
    target_ref: TargetRef
    autoscaler_ref: AutoscalerRef | None = None
    ingress_ref: LocalObjectReference | None = None
    route_ref: LocalObjectReference | None = None
    upstream_ref: CrossNamespaceObjectReference | None = None
    service: CanaryService
    analysis: CanaryAnalysis | None = None
    # Deprecated spelling of `analysis`; folded into `analysis` after validation and never written back.
    canary_analysis: CanaryAnalysis | None = Field(None, exclude=True)
    progress_deadline_seconds: int = Field(600, ge=1)
    skip_analysis: bool = False
    revert_on_deletion: bool = False
    suspend: bool = False
    # canaryflow extension: required for a `LocalApp` target, forbidden for any other.
    local: LocalAppSpec | None = None

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is None or value in MESH_PROVIDERS or _SMI_WITH_MESH.match(value):
            return value
        raise rule_error(
            f"unknown provider `{value}`",
            f"use one of: {', '.join(MESH_PROVIDERS)}.{did_you_mean(value, MESH_PROVIDERS)}".rstrip(),
        )

    @model_validator(mode="before")
    @classmethod
    def _knative_needs_no_service(cls, data: Any) -> Any:
        # Flagger's Knative examples omit `service` (its Knative router never reads it); a placeholder port
        # keeps `service` non-optional for every other provider.
        if isinstance(data, dict) and data.get("provider") == "knative" and "service" not in data:
            return {**data, "service": {"port": 80}}
        return data

    @model_validator(mode="after")
    def _knative_rules(self) -> Self:
        # Flagger's verifyKnativeCanary.
        problems = _Problems("CanarySpec")
        knative_target = self.target_ref.is_knative_service
        if knative_target and self.provider != "knative":
            problems.add(
                ("provider",),
                self.provider,
                "a Knative Service target needs `provider: knative`",
                "set `provider: knative`, or target a Deployment/DaemonSet",
            )
        if self.provider == "knative" and not knative_target:
            problems.add(
                ("targetRef",),
                None,
                "`provider: knative` needs a Knative Service target",
                "set `targetRef: {apiVersion: serving.knative.dev/v1, kind: Service, name: <service>}`",
            )
        if knative_target and self.autoscaler_ref is not None:
            problems.add(
                ("autoscalerRef",),
                None,
                "a Knative Service cannot use an autoscalerRef",
                "remove `autoscalerRef`; Knative scales the revisions itself",
            )
        problems.raise_if_any()
        return self

    @model_validator(mode="after")
    def _local_app_rules(self) -> Self:
        problems = _Problems("CanarySpec")
        kind = self.target_ref.kind
        if kind == "LocalApp" and self.local is None:
            problems.add(
                ("local",),
                None,
                "required field `local` is missing: a `LocalApp` target needs it",
                'add `local: {command: ["{python}", "-m", "canaryflow.demoapp", "--port", "{port}", '
                '"--version", "{version}"], version: v1, primaryPort: 18481, canaryPort: 18482, '
                "routerMetricsPort: 18483}` under `spec`",
            )
        if kind != "LocalApp" and self.local is not None:
            problems.add(
                ("local",),
                None,
                f"`local` only applies to a `LocalApp` target, not to a `{kind}`",
                "remove `local`, or set `targetRef.kind: LocalApp`",
            )
        if self.local is not None:
            used: dict[int, str] = {self.service.port: "service.port"}
            for key, port in (
                ("primaryPort", self.local.primary_port),
                ("canaryPort", self.local.canary_port),
                ("routerMetricsPort", self.local.router_metrics_port),
            ):
                if port in used:
                    problems.add(
                        ("local", key),
                        port,
                        f"port {port} is already used by `{used[port]}`",
                        "give service.port, local.primaryPort, local.canaryPort and local.routerMetricsPort "
                        "four different ports",
                    )
                else:
                    used[port] = f"local.{key}"
        problems.raise_if_any()
        return self

    @model_validator(mode="after")
    def _adopt_deprecated_analysis(self) -> Self:
        # Flagger reads `canaryAnalysis` only when `analysis` is absent.
        if self.analysis is None and self.canary_analysis is not None:
            self.analysis = self.canary_analysis
        self.canary_analysis = None
        return self


class _TopLevel(SpecModel):
    @model_validator(mode="before")
    @classmethod
    def _ignore_status(cls, data: Any) -> Any:
        return _drop_status(data)

    @field_validator("api_version", check_fields=False)
    @classmethod
    def _supported_api_version(cls, value: str) -> str:
        return _check_api_version(value)


class Canary(_TopLevel):
    api_version: str
    kind: Literal["Canary"]
    metadata: ObjectMeta
    spec: CanarySpec


# ----------------------------------------------------------------------------------------------------
# MetricTemplate and AlertProvider


class MetricTemplateProvider(SpecModel):
    type: str
    address: str | None = None
    headers: dict[str, list[str]] | None = None
    secret_ref: SecretRef | None = None
    region: str | None = None
    insecure_skip_verify: bool = False

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _one_of(value, METRIC_PROVIDER_TYPES, "metric provider type")


class MetricTemplateSpec(SpecModel):
    provider: MetricTemplateProvider
    query: str


class MetricTemplate(_TopLevel):
    api_version: str
    kind: Literal["MetricTemplate"]
    metadata: ObjectMeta
    spec: MetricTemplateSpec


class AlertProviderSpec(SpecModel):
    type: str
    channel: str = "general"
    username: str = "flagger"
    address: str | None = None
    proxy: str | None = None
    secret_ref: SecretRef | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _one_of(value, ALERT_PROVIDER_TYPES, "alert provider type")

    @model_validator(mode="after")
    def _address_or_secret(self) -> Self:
        # The CRD says oneOf, yet Flagger's docs set both (the secret wins): only "neither" is an error.
        if self.address is None and self.secret_ref is None:
            raise rule_error(
                "neither `address` nor `secretRef` is set",
                "set `address` (the webhook URL) or `secretRef` (a Secret with an `address` key)",
            )
        return self


class AlertProvider(_TopLevel):
    api_version: str
    kind: Literal["AlertProvider"]
    metadata: ObjectMeta
    spec: AlertProviderSpec


Resource: TypeAlias = Canary | MetricTemplate | AlertProvider
RESOURCE_KINDS: Mapping[str, type[Canary] | type[MetricTemplate] | type[AlertProvider]] = MappingProxyType(
    {"Canary": Canary, "MetricTemplate": MetricTemplate, "AlertProvider": AlertProvider}
)
