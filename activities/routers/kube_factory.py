"""The Kubernetes routers by `router_key(provider)` (Flagger's router factory, for the providers built here).

One SMI router serves `linkerd` (TrafficSplit v1alpha1), `osm` (v1alpha2) and `smi:v1alpha1|2|3[:<mesh>]`; one
Gateway API router serves `gatewayapi:v1` and `gatewayapi:v1beta1`: each picks the API version from the canary's
full provider string at every call.
"""

from __future__ import annotations

from kubernetes import client as k8s

from activities.routers.base import Router
from activities.routers.gatewayapi import GatewayAPIRouter
from activities.routers.istio import IstioRouter
from activities.routers.kubernetes import KubernetesRouter
from activities.routers.nginx import DEFAULT_ANNOTATIONS_PREFIX, NginxRouter
from activities.routers.smi import SmiRouter


def kubernetes_routers(
    api_client: k8s.ApiClient, *, ingress_annotations_prefix: str = DEFAULT_ANNOTATIONS_PREFIX
) -> dict[str, Router]:
    smi = SmiRouter(api_client)
    return {
        "istio": IstioRouter(api_client),
        "linkerd": smi,
        "osm": smi,
        "smi": smi,
        "nginx": NginxRouter(api_client, ingress_annotations_prefix),
        "gatewayapi": GatewayAPIRouter(api_client),
        "kubernetes": KubernetesRouter(api_client),
    }
