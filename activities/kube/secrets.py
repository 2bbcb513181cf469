"""Kubernetes Secrets as a source for `activities.secrets.read_secret` (MetricTemplate/AlertProvider secretRefs)."""

from __future__ import annotations

import base64
import binascii

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.secrets import ClusterSecretReader, SecretError, SecretInvalid, SecretNotFound


def cluster_secret_reader(api_client: k8s.ApiClient) -> ClusterSecretReader:
    core = k8s.CoreV1Api(api_client)

    def read(name: str, namespace: str) -> dict[str, str]:
        try:
            secret = core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise SecretNotFound(f"secret {namespace}/{name} not found in the cluster") from None
            if error.status in (401, 403):
                raise SecretError(
                    f"not allowed to read secret {namespace}/{name}: grant the worker's service account `get` on "
                    "secrets in that namespace"
                ) from None
            raise SecretError(f"reading secret {namespace}/{name} failed: Kubernetes API {error.status}") from None
        values: dict[str, str] = {}
        for key, encoded in (secret.data or {}).items():
            try:
                values[key] = base64.b64decode(encoded).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise SecretInvalid(f"secret {namespace}/{name} key {key!r} is not UTF-8 text") from None
        values.update(secret.string_data or {})
        return values

    return read
