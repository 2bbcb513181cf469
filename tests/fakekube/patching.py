"""Applying a PATCH body by its Content-Type, with the apiserver's 415/422 answers."""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from . import errors
from .kinds import ResourceType
from .smp import json_merge, strategic_merge

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def accepted_patch_types(resource_type: ResourceType) -> list[str]:
    if resource_type.custom:
        return [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    return [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]


def apply_patch(resource_type: ResourceType, content_type: str, current: dict[str, Any], body: Any) -> dict[str, Any]:
    media_type = content_type.split(";")[0].strip()
    accepted = accepted_patch_types(resource_type)
    if media_type not in accepted or media_type == APPLY_PATCH:
        raise errors.unsupported_media_type(media_type, accepted)
    if media_type == JSON_PATCH:
        if not isinstance(body, list):
            raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            patched = jsonpatch.JsonPatch(body).apply(current)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, TypeError) as error:
            raise errors.ApiError(422, "Invalid", str(error)) from error
    elif not isinstance(body, dict):
        raise errors.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    elif media_type == MERGE_PATCH:
        patched = json_merge(current, body)
    else:
        patched = strategic_merge(current, body)
    if not isinstance(patched, dict):
        raise errors.ApiError(422, "Invalid", "the patched object is not a JSON object")
    return patched
