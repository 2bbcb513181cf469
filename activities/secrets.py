"""Read named secrets inside activities, so workflow inputs and histories only ever carry secret names.

Two sources, in this order:
- a local directory `$CANARYFLOW_SECRETS_DIR`: `<namespace>/<name>.yaml` (or `.json`) first, then `<name>.yaml`
  (or `.json`), each one flat mapping of key to scalar value;
- the Kubernetes Secret `<namespace>/<name>` when the worker serves the Kubernetes platform (Flagger's model).
Error messages name the secret and its key, never a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

SECRETS_DIR_ENV = "CANARYFLOW_SECRETS_DIR"
SECRET_FILE_SUFFIXES = (".yaml", ".yml", ".json")


class SecretError(Exception):
    """Base of every secret lookup problem; the message is safe to show (it contains no secret value)."""


class SecretNotFound(SecretError):
    """The secret (or the requested key inside it) does not exist."""


class SecretInvalid(SecretError):
    """The secret file exists but is not a flat mapping of scalars."""


# (name, namespace) -> data; set when the worker has a Kubernetes cluster (activities/kube/secrets.py).
ClusterSecretReader = Callable[[str, str], dict[str, str]]
_cluster_reader: ClusterSecretReader | None = None


def use_cluster_secrets(reader: ClusterSecretReader | None) -> None:
    global _cluster_reader
    _cluster_reader = reader


def read_secret(name: str, namespace: str | None = None) -> dict[str, str]:
    """Return the key/value pairs of secret `name`, preferring the copy in `namespace` when there is one."""
    _check_path_part("secret name", name)
    if _cluster_reader is not None and namespace and not os.environ.get(SECRETS_DIR_ENV):
        return _cluster_reader(name, namespace)
    secrets_dir = _secrets_dir(name)
    search_dirs = [secrets_dir]
    if namespace:
        _check_path_part("namespace", namespace)
        search_dirs.insert(0, secrets_dir / namespace)
    for directory in search_dirs:
        for suffix in SECRET_FILE_SUFFIXES:
            path = directory / f"{name}{suffix}"
            if path.is_file():
                return _parse_secret_file(path, _describe(name, namespace))
    if _cluster_reader is not None and namespace:
        return _cluster_reader(name, namespace)
    raise SecretNotFound(f"secret {_describe(name, namespace)} not found in {secrets_dir}")


def read_secret_key(name: str, key: str, namespace: str | None = None) -> str:
    """Return one value of a secret; raise SecretNotFound naming the key if it is absent."""
    data = read_secret(name, namespace)
    if key not in data:
        raise SecretNotFound(f"secret {_describe(name, namespace)} has no key {key!r}")
    return data[key]


def _secrets_dir(name: str) -> Path:
    configured = os.environ.get(SECRETS_DIR_ENV, "")
    if not configured:
        raise SecretNotFound(f"secret {name!r} cannot be read: {SECRETS_DIR_ENV} is not set")
    return Path(configured)


def _check_path_part(what: str, value: str) -> None:
    # Names come from user specs; keep them from escaping the secrets directory.
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise SecretNotFound(f"invalid {what} {value!r}")


def _describe(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


def _parse_secret_file(path: Path, description: str) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    try:
        loaded: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError):
        # The parser's message may quote file content, so it is deliberately not included.
        raise SecretInvalid(f"secret {description} ({path.name}) is not valid {path.suffix[1:]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SecretInvalid(f"secret {description} ({path.name}) must hold a mapping of key to value")
    values: dict[str, str] = {}
    for key, value in loaded.items():
        if isinstance(value, dict | list):
            raise SecretInvalid(f"secret {description} key {str(key)!r} must be a scalar, not a {type(value).__name__}")
        values[str(key)] = "" if value is None else str(value)
    return values
