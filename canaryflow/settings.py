"""Process settings read from the environment.

Temporal's connection uses Temporal's own variable names (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS_*), so one environment works for the `temporal` CLI and for canaryflow, against
the embedded dev server, a self-hosted cluster or Temporal Cloud. Everything canaryflow-specific is
prefixed CANARYFLOW_.
Every field can also be passed by its Python name: `Settings(task_queue="q", temporal_address="h:1")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from canaryflow.shared import TASK_QUEUE

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DEFAULT_DEV_PORT = 7466
DEFAULT_DEV_UI_PORT = 8466


def _temporal_env(name: str) -> AliasChoices:
    """Accept Temporal's standard variable, and the CANARYFLOW_-prefixed spelling for consistency."""
    return AliasChoices(name, f"CANARYFLOW_{name}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CANARYFLOW_",
        case_sensitive=False,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
    )

    # Temporal connection. When TEMPORAL_ADDRESS is unset it follows dev_port (the embedded dev server).
    temporal_address: str = Field(
        default=f"127.0.0.1:{DEFAULT_DEV_PORT}", validation_alias=_temporal_env("TEMPORAL_ADDRESS")
    )
    temporal_namespace: str = Field(default="default", validation_alias=_temporal_env("TEMPORAL_NAMESPACE"))
    temporal_api_key: SecretStr | None = Field(default=None, validation_alias=_temporal_env("TEMPORAL_API_KEY"))
    # Turned on automatically by an API key or a client certificate unless set explicitly.
    temporal_tls: bool = Field(default=False, validation_alias=_temporal_env("TEMPORAL_TLS"))
    temporal_tls_client_cert_path: Path | None = Field(
        default=None, validation_alias=_temporal_env("TEMPORAL_TLS_CLIENT_CERT_PATH")
    )
    temporal_tls_client_key_path: Path | None = Field(
        default=None, validation_alias=_temporal_env("TEMPORAL_TLS_CLIENT_KEY_PATH")
    )
    temporal_tls_server_ca_cert_path: Path | None = Field(
        default=None, validation_alias=_temporal_env("TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    )
    temporal_tls_server_name: str | None = Field(
        default=None, validation_alias=_temporal_env("TEMPORAL_TLS_SERVER_NAME")
    )

    # canaryflow (env CANARYFLOW_<FIELD>)
    task_queue: str = TASK_QUEUE
    cluster_name: str | None = None  # prefixes workflow ids when several clusters share one namespace
    state_dir: Path = Field(default_factory=lambda: Path.home() / ".canaryflow")
    dev_port: int = Field(default=DEFAULT_DEV_PORT, ge=1, le=65535)
    dev_ui_port: int = Field(default=DEFAULT_DEV_UI_PORT, ge=1, le=65535)
    dev_db_file: Path | None = None  # defaults to <state_dir>/temporal.db
    worker_metrics_bind: str = ""  # host:port of the worker's Prometheus endpoint; empty disables it
    max_concurrent_activities: int = Field(default=50, ge=1)
    max_concurrent_workflow_tasks: int | None = Field(default=None, ge=2)  # None: the SDK default
    graceful_shutdown_seconds: float = Field(default=30.0, ge=0)
    min_interval_seconds: float = Field(default=10.0, ge=0)  # Flagger's floor for analysis intervals
    # Prometheus used by builtin metrics when a Canary sets no spec.metricsServer (the local stack's by default).
    metrics_server: str = "http://127.0.0.1:9490"
    loadtester_port: int = Field(default=9491, ge=1, le=65535)  # the local stack's load tester
    register_search_attributes: bool = True  # the worker creates our search attributes at start when allowed
    # Kubernetes platform: a kubeconfig path (else $KUBECONFIG / ~/.kube/config, else in-cluster config).
    kubeconfig: Path | None = None
    kube_context: str | None = None
    # Register the Kubernetes workloads/routers in the worker: "auto" = when a cluster configuration is found.
    kubernetes: Literal["auto", "on", "off"] = "auto"
    # Flagger's -event-webhook: every release event is POSTed here (an http(s) URL or secret:<name>/<key>).
    event_webhook: str | None = None
    # Flagger's -mesh-provider: the router of Kubernetes canaries that set no spec.provider (Flagger's default is
    # istio; ours is the mesh-less `kubernetes` provider unless set).
    mesh_provider: str | None = None
    # Flagger's -include-label-prefix: labels/annotations (comma-separated prefixes) copied to generated objects.
    include_label_prefix: str = ""
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line with release, phase and step

    @field_validator("state_dir", "dev_db_file", "kubeconfig", mode="after")
    @classmethod
    def _expand_home(cls, path: Path | None) -> Path | None:
        return path.expanduser() if path is not None else None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, log_format: object) -> object:
        return log_format.lower() if isinstance(log_format, str) else log_format

    @field_validator(
        "cluster_name",
        "temporal_tls_server_name",
        "kubeconfig",
        "kube_context",
        "mesh_provider",
        "event_webhook",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if "temporal_address" not in self.model_fields_set:
            self.temporal_address = self.dev_address
        if self.dev_db_file is None:
            self.dev_db_file = self.state_dir / "temporal.db"
        if "temporal_tls" not in self.model_fields_set and (
            self.temporal_api_key is not None or self.temporal_tls_client_cert_path is not None
        ):
            self.temporal_tls = True
        return self

    @property
    def dev_address(self) -> str:
        """The frontend address of the embedded dev server."""
        return f"127.0.0.1:{self.dev_port}"

    @property
    def dev_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.dev_ui_port}"

    @property
    def dev_db_path(self) -> Path:
        """`dev_db_file` after defaulting (never None once validated)."""
        return self.dev_db_file if self.dev_db_file is not None else self.state_dir / "temporal.db"


def load_settings() -> Settings:
    """Settings from the current environment (read afresh on every call)."""
    return Settings()
