"""Names of the objects Flagger generates for a canary (flagger-semantics §1.5)."""

from __future__ import annotations

from canaryflow.spec import Canary


def primary_name(target_name: str) -> str:
    return f"{target_name}-primary"


def apex_service_name(canary: Canary) -> str:
    """The service users call: `spec.service.name`, else the target's name."""
    service = canary.spec.service
    return (service.name if service is not None and service.name else None) or canary.spec.target_ref.name


def primary_service_name(canary: Canary) -> str:
    return f"{apex_service_name(canary)}-primary"


def canary_service_name(canary: Canary) -> str:
    return f"{apex_service_name(canary)}-canary"
