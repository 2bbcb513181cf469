"""The ClusterIP services apex / `-primary` / `-canary` (Flagger's KubernetesDefaultRouter).

`<svc>-canary` selects the target's pods, `<svc>-primary` and the apex `<svc>` the primary's. Ports come from
`spec.service` (port, targetPort (default: port), portName (default `http`), appProtocol) plus, with
`portDiscovery`, every other container port of the target (sidecars `istio-proxy`/`envoy` excluded).
An existing service gets its ports and selector reconciled; its labels/annotations only when the Canary owns it
(`spec.service.{apex,primary,canary}` metadata, keys in `unmanagedMetadata` preserved).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client import ApiClient

from activities.kube import rest
from activities.kube.labels import KUBECTL_LAST_APPLIED_ANNOTATION, without_toolkit_keys
from activities.kube.names import apex_service_name, canary_service_name, primary_name, primary_service_name
from canaryflow.spec import Canary, CanaryService, CustomMetadata

_SIDECARS = frozenset({"istio-proxy", "envoy"})


def discovered_ports(service: CanaryService, containers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Flagger's getPorts: container ports other than the service's own, by port name (or `tcp-<container>-<i>`)."""
    ports: dict[str, int] = {}
    for container in containers:
        if container.get("name") in _SIDECARS:
            continue
        for index, port in enumerate(container.get("ports") or []):
            number = int(port.get("containerPort", 0))
            target_port = service.target_port
            if target_port is None or target_port == 0:
                if number == service.port:
                    continue
            elif isinstance(target_port, int):
                if number == target_port:
                    continue
            elif port.get("name") == target_port:
                continue
            ports[port.get("name") or f"tcp-{container.get('name')}-{index}"] = number
    return ports


def service_ports(service: CanaryService, extra_ports: Mapping[str, int]) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": service.port_name or "http",
        "protocol": "TCP",
        "port": service.port,
        "targetPort": service.target_port if service.target_port not in (None, 0, "") else service.port,
    }
    if service.app_protocol:
        main["appProtocol"] = service.app_protocol
    extra = [
        {"name": name, "protocol": "TCP", "port": port, "targetPort": port}
        for name, port in sorted(extra_ports.items())
    ]
    return [main, *extra]


def _comparable_ports(ports: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            int(port.get("port", 0)),
            port.get("name", ""),
            port.get("protocol", "TCP"),
            str(port.get("targetPort", port.get("port"))),
            port.get("appProtocol"),
            int(port.get("nodePort") or 0),
        )
        for port in ports
    )


def _owned_by(service: Mapping[str, Any], canary_name: str) -> bool:
    for reference in service.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return bool(reference.get("kind") == "Canary" and reference.get("name") == canary_name)
    return False


def reconcile_service(
    api: ApiClient,
    canary: Canary,
    name: str,
    selector: Mapping[str, str],
    custom: CustomMetadata | None,
    *,
    extra_ports: Mapping[str, int],
    owner: Mapping[str, Any] | None,
) -> bool:
    """Create the service or bring its ports/selector (and owned metadata) to the desired state. Blocking.

    Returns True when the service did not exist or selected other pods."""
    service = canary.spec.service
    selector_key = next(iter(selector))
    labels = {**(custom.labels if custom else {}), selector_key: name}
    annotations = without_toolkit_keys(custom.annotations if custom else {})
    ports = service_ports(service, extra_ports)

    reselected = False

    def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
        nonlocal reselected
        reselected = current is None or (current.get("spec") or {}).get("selector") != dict(selector)
        if current is None:
            spec: dict[str, Any] = {"type": "ClusterIP", "selector": dict(selector), "ports": ports}
            if service.headless:
                spec["clusterIP"] = "None"
            if service.traffic_distribution:
                spec["trafficDistribution"] = service.traffic_distribution
            metadata: dict[str, Any] = {"labels": labels, "annotations": annotations}
            if owner is not None:
                metadata["ownerReferences"] = [dict(owner)]
            return {"metadata": metadata, "spec": spec}
        changed = False
        current_spec = current.setdefault("spec", {})
        wanted_ports = [dict(port) for port in ports]
        for existing in current_spec.get("ports") or []:  # keep allocated node ports
            for port in wanted_ports:
                if port["name"] == existing.get("name") and int(existing.get("nodePort") or 0) > 0:
                    port["nodePort"] = existing["nodePort"]
        if _comparable_ports(wanted_ports) != _comparable_ports(current_spec.get("ports") or []) or current_spec.get(
            "selector"
        ) != dict(selector):
            current_spec["ports"] = wanted_ports
            current_spec["selector"] = dict(selector)
            changed = True
        current_meta = current.setdefault("metadata", {})
        if _owned_by(current, canary.metadata.name):
            unmanaged = service.unmanaged_metadata
            kept_annotations = {
                key: value
                for key, value in (current_meta.get("annotations") or {}).items()
                if unmanaged is not None and key in unmanaged.annotations
            }
            kept_labels = {
                key: value
                for key, value in (current_meta.get("labels") or {}).items()
                if unmanaged is not None and key in unmanaged.labels
            }
            new_annotations = {**annotations, **kept_annotations}
            new_labels = {**labels, **kept_labels}
            if new_annotations != (current_meta.get("annotations") or {}):
                current_meta["annotations"] = new_annotations
                changed = True
            if new_labels != (current_meta.get("labels") or {}):
                current_meta["labels"] = new_labels
                changed = True
        if not changed:
            return None
        current_meta["annotations"] = without_toolkit_keys(current_meta.get("annotations"))
        return current

    rest.upsert(api, rest.SERVICES, canary.metadata.namespace, name, build)
    return reselected


def reconcile_canary_and_primary_services(
    api: ApiClient,
    canary: Canary,
    selector_key: str,
    selector_value: str,
    *,
    extra_ports: Mapping[str, int],
    owner: Mapping[str, Any] | None,
) -> None:
    """Flagger's KubernetesDefaultRouter.Initialize."""
    service = canary.spec.service
    reconcile_service(
        api,
        canary,
        canary_service_name(canary),
        {selector_key: selector_value},
        service.canary,
        extra_ports=extra_ports,
        owner=owner,
    )
    reconcile_service(
        api,
        canary,
        primary_service_name(canary),
        {selector_key: primary_name(selector_value)},
        service.primary,
        extra_ports=extra_ports,
        owner=owner,
    )


def reconcile_apex_service(
    api: ApiClient,
    canary: Canary,
    selector_key: str,
    selector_value: str,
    *,
    extra_ports: Mapping[str, int],
    owner: Mapping[str, Any] | None,
) -> bool:
    """Flagger's KubernetesDefaultRouter.Reconcile: the apex service selects the primary's pods.

    Returns True when it did not exist or selected other pods (the target's, before bootstrapping ended)."""
    return reconcile_service(
        api,
        canary,
        apex_service_name(canary),
        {selector_key: primary_name(selector_value)},
        canary.spec.service.apex,
        extra_ports=extra_ports,
        owner=owner,
    )


def revert_apex_service(
    api: ApiClient,
    canary: Canary,
    selector_key: str,
    selector_value: str,
    *,
    extra_ports: Mapping[str, int],
) -> None:
    """Flagger's KubernetesDefaultRouter.Finalize: an apex service the Canary did not create selects the target's
    pods again (the selector kubectl last applied, else `<label>: <value>`). An owned one is left for the garbage
    collector. Blocking."""
    apex_name = apex_service_name(canary)
    apex = rest.read(api, rest.SERVICES, canary.metadata.namespace, apex_name)
    if any(
        ref.get("controller") and ref.get("kind") == "Canary" for ref in apex["metadata"].get("ownerReferences") or []
    ):
        return
    last_applied = (apex["metadata"].get("annotations") or {}).get(KUBECTL_LAST_APPLIED_ANNOTATION)
    if last_applied is None:
        reconcile_service(
            api, canary, apex_name, {selector_key: selector_value}, None, extra_ports=extra_ports, owner=None
        )
        return
    selector = (json.loads(last_applied).get("spec") or {}).get("selector")

    def build(current: rest.JsonObject | None) -> rest.JsonObject | None:
        if current is None or current.get("spec", {}).get("selector") == selector:
            return None
        current["spec"]["selector"] = selector
        return current

    rest.upsert(api, rest.SERVICES, canary.metadata.namespace, apex_name, build)
