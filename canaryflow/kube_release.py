"""CI mode on a cluster: `canaryflow release -f canary.yaml --image REPO:TAG --kubeconfig PATH`.

The new image goes on the target Deployment/DaemonSet's container whose image repository is REPO (else its first
container) and the release starts with the revision the target has with it: pod template plus tracked configs,
computed like the controller's `workload_revision`. So a controller watching the same Canary computes the same
revision, and the running release ignores it as one it already has: never two releases.

When the target already has a primary the image is set at once. On a canary's first release it is left to the
release (`ReleaseRequest.image`): the workload bootstraps the primary from the current version first, so the
new image goes through the analysis instead of being promoted as the initial version.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.exceptions import ApplicationError
from urllib3.exceptions import HTTPError

from activities.kube import rest
from activities.kube.client import KubeConfigMissing, load_api_client
from activities.kube.names import primary_name
from activities.kube.podspec import set_container_image
from activities.kube.revision import pod_template_and_configs_revision
from canaryflow.settings import Settings
from canaryflow.spec import Canary
from workflows.model import ReleaseRequest

CLUSTER_TARGET_KINDS = ("Deployment", "DaemonSet")
from canaryflow.shared import EXIT_INVALID, EXIT_UNREACHABLE  # noqa: E402


class KubeReleaseError(Exception):
    """A failure the user can act on, with the CLI exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageUpdate:
    container: str
    previous_image: str
    image: str
    applied_now: bool  # False: the release sets it once the primary is bootstrapped


@dataclass(frozen=True)
class ClusterRelease:
    request: ReleaseRequest
    image_update: ImageUpdate | None


def targets_cluster(canary: Canary) -> bool:
    return canary.spec.target_ref.kind in CLUSTER_TARGET_KINDS


def _resource(canary: Canary) -> rest.Resource:
    return rest.DAEMONSETS if canary.spec.target_ref.kind == "DaemonSet" else rest.DEPLOYMENTS


def _with_image(template: dict[str, Any], image: str) -> tuple[dict[str, Any], ImageUpdate | None]:
    """A copy of the pod template running `image`, and which container changed (None: already runs it)."""
    changed = copy.deepcopy(template)
    pod_spec = changed.setdefault("spec", {})
    before = [str(c.get("image", "")) for c in pod_spec.get("containers") or []]
    if not set_container_image(pod_spec, image):
        return changed, None
    index = next(i for i, c in enumerate(pod_spec["containers"]) if str(c.get("image", "")) != before[i])
    container = pod_spec["containers"][index]
    return changed, ImageUpdate(str(container["name"]), before[index], image, applied_now=False)


def _patch_image(api_client: k8s.ApiClient, canary: Canary, update: ImageUpdate) -> None:
    """A strategic merge patch keyed by container name: other containers and fields stay as they are."""
    apps = k8s.AppsV1Api(api_client)
    patch = (
        apps.patch_namespaced_daemon_set
        if canary.spec.target_ref.kind == "DaemonSet"
        else apps.patch_namespaced_deployment
    )
    body = {"spec": {"template": {"spec": {"containers": [{"name": update.container, "image": update.image}]}}}}
    patch(canary.spec.target_ref.name, canary.metadata.namespace, body)


def cluster_release(api_client: k8s.ApiClient, request: ReleaseRequest, image: str | None) -> ClusterRelease:
    """Set the image (when the primary exists) and return the request with the cluster revision. Blocking."""
    canary = request.canary
    namespace, name = canary.metadata.namespace, canary.spec.target_ref.name
    target = rest.read(api_client, _resource(canary), namespace, name)
    template: dict[str, Any] = target["spec"]["template"]
    update: ImageUpdate | None = None
    if image:
        template, update = _with_image(template, image)
        has_primary = rest.read_optional(api_client, _resource(canary), namespace, primary_name(name)) is not None
        if update is not None and has_primary:
            _patch_image(api_client, canary, update)
            update = ImageUpdate(update.container, update.previous_image, update.image, applied_now=True)
    revision = pod_template_and_configs_revision(api_client, namespace, template)
    return ClusterRelease(request.model_copy(update={"revision": revision, "image": image}), update)


def _cluster_error(error: Exception, canary: Canary) -> KubeReleaseError:
    target = canary.spec.target_ref
    where = f"{target.kind} {canary.metadata.namespace}/{target.name}"
    if isinstance(error, KubeConfigMissing):
        return KubeReleaseError(str(error), EXIT_INVALID)
    if isinstance(error, ApiException):
        if error.status == 404:
            return KubeReleaseError(
                f"{where} not found in the cluster (or a config it mounts is missing)", EXIT_INVALID
            )
        if error.status in (401, 403):
            return KubeReleaseError(f"the cluster refused access to {where}: {error.reason}", EXIT_INVALID)
        if error.status in (400, 422):
            return KubeReleaseError(f"the cluster rejected the update of {where}: {error.reason}", EXIT_INVALID)
        return KubeReleaseError(f"Kubernetes API error {error.status} on {where}: {error.reason}", EXIT_UNREACHABLE)
    if isinstance(error, ApplicationError):  # the pod template cannot take the image (e.g. no containers)
        return KubeReleaseError(f"{where}: {error.message}", EXIT_INVALID)
    return KubeReleaseError(f"Kubernetes API unreachable: {error}", EXIT_UNREACHABLE)


def prepare_cluster_release(settings: Settings, request: ReleaseRequest, image: str | None) -> ClusterRelease:
    """`cluster_release` with the client of the settings' kubeconfig, errors mapped to exit codes."""
    canary = request.canary
    try:
        api_client = load_api_client(settings)
        try:
            return cluster_release(api_client, request, image)
        finally:
            api_client.close()
    except (KubeConfigMissing, ApiException, ApplicationError, HTTPError, OSError) as error:
        raise _cluster_error(error, canary) from error
