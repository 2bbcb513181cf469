"""CustomResourceDefinitions: turning one into routable resource types, and the ready-made CRD fixtures."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from .errors import invalid
from .kinds import ResourceType, ScaleSpec

FIXTURE_DIR = Path(__file__).parent / "crds"
PROJECT_CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"
FIXTURE_SETS = ("istio", "smi", "gatewayapi", "keda", "keptn", "canaryflow")
CRD_KIND = "CustomResourceDefinition"


def _crd_invalid(name: str, field: str, detail: str) -> Exception:
    return invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, field, detail)


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version; 422 for the structural mistakes the real apiserver rejects."""
    name = crd.get("metadata", {}).get("name", "")
    spec = crd.get("spec") or {}
    group, names = spec.get("group", ""), spec.get("names") or {}
    plural, kind = names.get("plural", ""), names.get("kind", "")
    if not group or not plural or not kind:
        raise _crd_invalid(name, "spec", "Required value: spec.group, spec.names.plural and spec.names.kind")
    if name != f"{plural}.{group}":
        raise _crd_invalid(name, "metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
    scope = spec.get("scope", "Namespaced")
    versions = spec.get("versions") or []
    if not versions:
        raise _crd_invalid(
            name, "spec.versions", "Invalid value: null: must have exactly one version marked as storage"
        )
    types = []
    for version in versions:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        scale = subresources.get("scale")
        types.append(
            ResourceType(
                group=group,
                version=version["name"],
                kind=kind,
                plural=plural,
                namespaced=scope == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                has_status="status" in subresources,
                scale=ScaleSpec(
                    spec_replicas_path=scale.get("specReplicasPath", ".spec.replicas"),
                    status_replicas_path=scale.get("statusReplicasPath", ".status.replicas"),
                    label_selector_path=scale.get("labelSelectorPath", ""),
                )
                if scale is not None
                else None,
                tracks_generation=True,
                custom=True,
                list_kind=names.get("listKind", f"{kind}List"),
                singular=names.get("singular", kind.lower()),
                storage_group_resource=(group, plural),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return types


def crd_status(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd.get("spec") or {}
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    accepted = copy.deepcopy(spec.get("names") or {})
    accepted.setdefault("singular", str(accepted.get("kind", "")).lower())
    accepted.setdefault("listKind", f"{accepted.get('kind', '')}List")
    return {
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": storage,
    }


def _load_documents(path: Path) -> list[dict[str, Any]]:
    return copy.deepcopy(_parsed_documents(path))


@functools.cache
def _parsed_documents(path: Path) -> list[dict[str, Any]]:
    return [
        doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict) and doc.get("kind") == CRD_KIND
    ]


def _as_group(crd: dict[str, Any], group: str) -> dict[str, Any]:
    clone = copy.deepcopy(crd)
    clone["spec"]["group"] = group
    clone["metadata"] = {"name": f"{clone['spec']['names']['plural']}.{group}"}
    return clone


def fixture_crds(*sets: str) -> list[dict[str, Any]]:
    """The CRDs of the named fixture sets (all when none is named)."""
    unknown = set(sets) - set(FIXTURE_SETS)
    if unknown:
        raise ValueError(f"unknown CRD fixture sets {sorted(unknown)}; known: {FIXTURE_SETS}")
    crds: list[dict[str, Any]] = []
    for name in sets or FIXTURE_SETS:
        documents = _load_documents(FIXTURE_DIR / f"{name}.yaml")
        crds.extend(documents)
        if name == "canaryflow":
            crds.extend(_canaryflow_dev_crds(documents))
    return crds


def _canaryflow_dev_crds(flagger_crds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """canaryflow.dev: the project's own deploy/crds when present, else the flagger.app fixtures re-grouped."""
    if PROJECT_CRD_DIR.is_dir():
        project = [
            doc
            for path in sorted(PROJECT_CRD_DIR.glob("*.yaml"))
            for doc in _load_documents(path)
            if doc.get("spec", {}).get("group") == "canaryflow.dev"
        ]
        if project:
            return project
    return [_as_group(crd, "canaryflow.dev") for crd in flagger_crds]
