"""The NGINX ingress router (Flagger's IngressRouter): the Ingress `<ingressRef>-canary`, a copy of the Ingress
in `spec.ingressRef` whose backends point at `<apex>-canary` instead of the apex Service.

- `reconcile` creates the copy (labels copied; annotations copied minus kubectl's and any `<prefix>/canary*`,
  plus `<prefix>/canary: "true"`, `<prefix>/canary-weight: "0"` and Flux's opt-outs) and afterwards only keeps its
  spec in line with the referenced Ingress. The referenced Ingress must route to the apex Service.
- `set_routes`: weights go to `<prefix>/canary-weight`. A/B (`analysis.match`): a `cookie` header match becomes
  `canary-by-cookie` (its exact value is the cookie name), any other header `canary-by-header` with
  `canary-by-header-value` (exact) or `canary-by-header-pattern` (regex). Routing everything back to the primary
  (canary weight 0) strips every canary annotation back to `canary: "true"`, `canary-weight: "0"`.
- `get_routes`: with A/B, a `canary-by-cookie`/`canary-by-header` annotation means 0/100; otherwise the weight.
The prefix is Flagger's `-ingress-annotations-prefix` (default `nginx.ingress.kubernetes.io`).
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.contracts import ERR_NOT_FOUND, ReleaseTarget, Routes, SetRoutes
from activities.kube import rest
from activities.kube.labels import KUBECTL_LAST_APPLIED_ANNOTATION
from activities.kube.names import apex_service_name, canary_service_name
from activities.routers import kube_objects as ko
from activities.routers.kube_objects import Object
from canaryflow.spec import Canary

DEFAULT_ANNOTATIONS_PREFIX = "nginx.ingress.kubernetes.io"


def canary_ingress_name(canary: Canary) -> str:
    reference = canary.spec.ingress_ref
    return f"{reference.name if reference else ''}-canary"


def canary_ingress_spec(canary: Canary, ingress: Object) -> Object | None:
    """The referenced Ingress' spec with the apex backends replaced by the canary Service; None when no path of
    it routes to the apex Service."""
    spec = copy.deepcopy(ingress.get("spec") or {})
    apex, found = apex_service_name(canary), False
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            service = (path.get("backend") or {}).get("service")
            if service is not None and service.get("name") == apex:
                service["name"] = canary_service_name(canary)
                found = True
    return spec if found else None


class Annotations:
    """The canary annotations under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def reset(self, annotations: dict[str, str]) -> dict[str, str]:
        """Flagger's makeAnnotations: drop kubectl's and every canary annotation, then canary on with weight 0."""
        kept = {
            key: value
            for key, value in ko.managed_annotations(annotations).items()
            if self.key("canary") not in key and KUBECTL_LAST_APPLIED_ANNOTATION not in key
        }
        return {**kept, self.key("canary"): "true", self.key("canary-weight"): "0"}

    def for_match(self, annotations: dict[str, str], matches: list[dict[str, Any]]) -> dict[str, str]:
        """Flagger's makeHeaderAnnotations for A/B: the last header (and the cookie) of `analysis.match`."""
        cookie = header = header_value = header_regex = ""
        for match in matches:
            for name, condition in (match.get("headers") or {}).items():
                if name == "cookie":
                    cookie = condition.get("exact", "")
                else:
                    header, header_value, header_regex = name, condition.get("exact", ""), condition.get("regex", "")
        # Flagger filters on the annotation *value* here (a quirk kept on purpose): canary-weight etc. stay.
        result = {
            key: value for key, value in ko.managed_annotations(annotations).items() if self.key("canary") not in value
        }
        result[self.key("canary")] = "true"
        for suffix, value in (
            ("canary-by-cookie", cookie),
            ("canary-by-header", header),
            ("canary-by-header-value", header_value),
            ("canary-by-header-pattern", header_regex),
        ):
            if value:
                result[self.key(suffix)] = value
        return result

    def routed(self, canary: Canary, annotations: dict[str, str], canary_weight: int) -> dict[str, str]:
        """The canary Ingress' annotations after Flagger's SetRoutes(…, canary_weight)."""
        analysis = canary.spec.analysis
        if analysis is not None and analysis.match:
            result = self.for_match(annotations, analysis.match)
        else:
            result = {**annotations, self.key("canary-weight"): str(canary_weight)}
        if canary_weight > 0:
            result[self.key("canary")] = "true"
            return result
        return self.reset(result)

    def routes(self, canary: Canary, annotations: dict[str, str]) -> Routes:
        analysis = canary.spec.analysis
        pinned = self.key("canary-by-cookie") in annotations or self.key("canary-by-header") in annotations
        if analysis is not None and analysis.match and pinned:
            return Routes(primary_weight=0, canary_weight=100)
        raw = annotations.get(self.key("canary-weight"), "0")
        weight = ko.percent(int(raw))  # ValueError for a non-integer, as Flagger's strconv.Atoi
        return Routes(primary_weight=100 - weight, canary_weight=weight)


def canary_ingress_object(canary: Canary, ingress: Object, spec: Object, annotations: Annotations) -> Object:
    """The canary Ingress `reconcile` creates from `ingress` (without the ownerReference to the Canary)."""
    metadata = ingress.get("metadata") or {}
    return ko.new_object(
        ko.INGRESS,
        canary.metadata.namespace,
        canary_ingress_name(canary),
        spec,
        labels=dict(metadata.get("labels") or {}),
        annotations=annotations.reset(dict(metadata.get("annotations") or {})),
    )


class NginxRouter(ko.BlockingRouter):
    """Routes a canary with an NGINX canary Ingress."""

    kind = "ingress"

    def __init__(self, api_client: k8s.ApiClient, annotations_prefix: str = DEFAULT_ANNOTATIONS_PREFIX) -> None:
        super().__init__(api_client)
        self._annotations = Annotations(annotations_prefix)

    def _reconcile(self, target: ReleaseTarget) -> None:
        canary = target.canary
        reference = canary.spec.ingress_ref
        if reference is None or not reference.name:
            raise ko.invalid_spec(target, "spec.ingressRef must name the Ingress for the nginx provider")
        namespace = canary.metadata.namespace
        ingress = rest.read_optional(self._api, ko.INGRESS, namespace, reference.name)
        if ingress is None:
            raise ApplicationError(
                f"{target.key}: ingress {reference.name}.{namespace} not found", type=ERR_NOT_FOUND, non_retryable=True
            )
        desired = canary_ingress_spec(canary, ingress)
        if desired is None:
            raise ko.invalid_spec(target, f"backend {apex_service_name(canary)} not found in ingress {reference.name}")

        def create() -> Object:
            return self._owned(canary, canary_ingress_object(canary, ingress, desired, self._annotations))

        update = ko.replace_changed_spec(desired)
        ko.upsert(self._api, ko.INGRESS, namespace, canary_ingress_name(canary), create=create, update=update)

    def _set_routes(self, request: SetRoutes) -> None:
        canary = request.target.canary

        def change(existing: Object) -> Object:
            metadata = existing.setdefault("metadata", {})
            annotations = dict(metadata.get("annotations") or {})
            metadata["annotations"] = self._annotations.routed(canary, annotations, request.routes.canary_weight)
            return existing

        self._modify_existing(request.target, ko.INGRESS, canary_ingress_name(canary), change)

    def _get_routes(self, target: ReleaseTarget) -> Routes:
        canary = target.canary
        name = canary_ingress_name(canary)
        found = self._read_existing(target, ko.INGRESS, name)
        try:
            return self._annotations.routes(canary, (found.get("metadata") or {}).get("annotations") or {})
        except ValueError as error:
            raise ko.invalid_spec(target, f"ingress {name}: canary-weight is not an integer ({error})") from None
