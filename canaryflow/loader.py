"""Load Canary, MetricTemplate and AlertProvider documents from YAML and explain what is wrong with them.

Every problem becomes a `SpecIssue` (path in the user's camelCase keys, message, fix); the issues of one
document form one `SpecError` whose `source` is `<file>#<document number>`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from canaryflow.spec import (
    API_VERSIONS,
    FLAGGER_API_VERSION,
    RESOURCE_KINDS,
    SPEC_RULE_ERROR,
    Canary,
    Resource,
    closest,
    did_you_mean,
)

__all__ = [
    "LoadResult",
    "SpecError",
    "SpecIssue",
    "canary_from_yaml",
    "issues_from_validation_error",
    "load_files",
    "load_text",
    "parse_resource",
    "parse_yaml",
]

_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What to write when a required key is missing, keyed by the key.
_EXAMPLES: dict[str, str] = {
    "apiVersion": f"apiVersion: {FLAGGER_API_VERSION}",
    "kind": "kind: Canary",
    "metadata": "metadata: {name: podinfo, namespace: test}",
    "spec": "spec: {...}",
    "name": "name: podinfo",
    "targetRef": "targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}",
    "service": "service: {port: 9898}",
    "port": "port: 9898",
    "interval": "interval: 1m",
    "threshold": "threshold: 5",
    "url": "url: http://flagger-loadtester.test/",
    "providerRef": "providerRef: {name: on-call}",
    "cookieName": "cookieName: flagger-cookie",
    "provider": "provider: {type: prometheus, address: http://prometheus:9090}",
    "query": "query: <PromQL or provider query>",
    "type": "type: slack",
}

# Allowed ranges, used to turn pydantic's bound errors into a fix.
_RANGES: dict[str, str] = {
    "stepWeight": "use a percentage from 1 to 100 (e.g. `stepWeight: 10`)",
    "stepWeights": "use percentages from 1 to 100 in ascending order (e.g. `stepWeights: [5, 10, 25, 50]`)",
    "maxWeight": "use a percentage from 1 to 100 (e.g. `maxWeight: 50`)",
    "mirrorWeight": "use a percentage from 0 to 100",
    "stepWeightPromotion": "use a percentage from 0 to 100 (0 promotes in one step)",
    "primaryReadyThreshold": "use a percentage of ready pods from 0 to 100",
    "canaryReadyThreshold": "use a percentage of ready pods from 0 to 100",
    "threshold": "use the number of failed checks that triggers a rollback, at least 1 (e.g. `threshold: 5`)",
    "iterations": "use the number of analysis iterations, 1 or more (or remove it)",
    "port": "use a TCP port from 1 to 65535",
    "retries": "use 0 or a positive number of retries",
    "progressDeadlineSeconds": "use a positive number of seconds (default 600)",
    "maxAge": "use 0 or a positive number of seconds (default 86400)",
}

_TYPE_FIXES: dict[str, tuple[str, str]] = {
    "int": ("is not a whole number", "write an integer without quotes, e.g. `10`"),
    "float": ("is not a number", "write a number without quotes, e.g. `99.5`"),
    "bool": ("is not a boolean", "write `true` or `false`"),
    "string": ("is not a string", "write text; quote it if YAML reads it as a number or boolean"),
    "dict": ("is not a mapping", "write `key: value` pairs here"),
    "model": ("is not a mapping", "write `key: value` pairs here"),
    "model_attributes": ("is not a mapping", "write `key: value` pairs here"),
    "list": ("is not a list", "write a YAML list (`- item` lines or `[a, b]`)"),
}


class SpecIssue(BaseModel):
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        location = f"{self.path}: " if self.path else ""
        return f"{location}{self.message}. Fix: {self.fix}"


class SpecError(Exception):
    """Everything wrong with one document (or file); `str()` gives one line per issue."""

    def __init__(self, source: str, issues: Sequence[SpecIssue]) -> None:
        super().__init__(source, list(issues))
        self.source = source
        self.issues = list(issues)

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {issue}" for issue in self.issues)


@dataclass
class LoadResult:
    resources: list[Resource] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    # Objects of other API groups found next to ours (a Secret in an AlertProvider's file): "<source> Kind/name".
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------------------------------------
# ValidationError -> SpecIssue


@dataclass
class _Located:
    path: str
    parent_model: type[BaseModel] | None
    union_members: list[str]
    key: str | int | None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional; return the remaining type (a union stays a union)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _model_field(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _locate(root: type[BaseModel], loc: tuple[str | int, ...]) -> _Located:
    """Turn a pydantic loc into `spec.analysis.stepWeights[2]`, following the model types past union tags."""
    path = ""
    current: Any = root
    parent: type[BaseModel] | None = None
    union_members: list[str] = []
    key: str | int | None = None
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if origin in (typing.Union, types.UnionType) and isinstance(part, str):
            union_members.append(part)  # pydantic names the union member it tried; not a user key
            current = Any
            continue
        key = part
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            parent = current
            info = _model_field(current, part)
            current = info.annotation if info is not None else Any
        elif origin is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif origin is dict and isinstance(part, str):
            current = typing.get_args(current)[1]
        else:
            current = Any
    return _Located(path, parent, union_members, key)


def _accepted_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _parent_path(path: str) -> str:
    trimmed = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path)
    return trimmed if trimmed != path else ""


def _issue_for(error: ErrorDetails, located: _Located) -> SpecIssue:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    key = located.key if isinstance(located.key, str) else ""
    path = located.path
    if kind == SPEC_RULE_ERROR:
        return SpecIssue(path=path, message=str(ctx.get("message", error["msg"])), fix=str(ctx.get("fix", "")))
    if kind == "missing":
        parent = _parent_path(path)
        where = f" under `{parent}`" if parent else " at the top level"
        example = _EXAMPLES.get(key, f"{key}: <value>")
        return SpecIssue(path=path, message=f"required field `{key}` is missing", fix=f"add `{example}`{where}")
    if kind == "extra_forbidden":
        accepted = _accepted_keys(located.parent_model) if located.parent_model else []
        match = closest(key, accepted)
        if match:
            fix = f"did you mean `{match}`? Rename the key"
        else:
            fix = f"remove it; accepted keys here: {', '.join(accepted)}" if accepted else "remove it"
        return SpecIssue(path=path, message=f"unknown field `{key}`", fix=fix)
    if located.union_members:
        return SpecIssue(
            path=path,
            message=f"`{_show(value)}` is not valid here",
            fix=f"write a value of one of these types: {', '.join(located.union_members)}",
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        range_key = key or _range_key_of_item(path)
        bound = error["msg"].removeprefix("Input should be ")
        fix = _RANGES.get(range_key, f"use a value {bound}")
        return SpecIssue(path=path, message=f"{_show(value)} is out of range (must be {bound})", fix=fix)
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        shown = ", ".join(f"`{option}`" if option else '`""`' for option in expected)
        hint = did_you_mean(str(value), [option for option in expected if option]) if expected else ""
        return SpecIssue(path=path, message=f"`{_show(value)}` is not allowed", fix=f"use one of: {shown}.{hint}")
    for prefix, (problem, fix) in _TYPE_FIXES.items():
        if kind.startswith(prefix + "_"):
            return SpecIssue(path=path, message=f"`{_show(value)}` {problem}", fix=fix)
    return SpecIssue(
        path=path,
        message=error["msg"],
        fix="check the value against Flagger's Canary / MetricTemplate / AlertProvider reference",
    )


def _range_key_of_item(path: str) -> str:
    # `spec.analysis.stepWeights[2]` -> `stepWeights`
    match = re.search(r"([A-Za-z]+)\[\d+\]$", path)
    return match.group(1) if match else ""


def issues_from_validation_error(error: ValidationError, model: type[BaseModel]) -> list[SpecIssue]:
    """Translate a pydantic error raised by `model.model_validate` into user-facing issues (one per path)."""
    details = error.errors(include_url=False)
    located = [_locate(model, detail["loc"]) for detail in details]
    # A value failing every member of a union yields one error per member: report it once, naming them all.
    members_by_path: dict[str, list[str]] = {}
    for place in located:
        members_by_path.setdefault(place.path, []).extend(place.union_members)
    issues: list[SpecIssue] = []
    seen: set[tuple[str, str]] = set()
    for detail, place in zip(details, located, strict=True):
        if place.union_members:
            place.union_members = list(dict.fromkeys(members_by_path[place.path]))
        issue = _issue_for(detail, place)
        identity = (issue.path, issue.message)
        if identity not in seen:
            seen.add(identity)
            issues.append(issue)
    return issues


# --------------------------------------------------------------------------------------------------------
# Documents


def parse_resource(data: Any, source: str = "<input>") -> Resource:
    """Validate one decoded document and return the typed resource; raises SpecError."""
    if not isinstance(data, dict):
        raise SpecError(
            source,
            [
                SpecIssue(
                    path="",
                    message=f"the document is a {type(data).__name__}, not a mapping",
                    fix="write a Kubernetes object with `apiVersion`, `kind`, `metadata` and `spec`",
                )
            ],
        )
    kinds = list(RESOURCE_KINDS)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in RESOURCE_KINDS:
        issues = [
            SpecIssue(
                path="kind",
                message="required field `kind` is missing" if kind is None else f"unsupported kind `{kind}`",
                fix=f"use one of: {', '.join(kinds)}.{did_you_mean(str(kind or ''), kinds)}".rstrip("."),
            )
        ]
        api_version = data.get("apiVersion")
        if api_version not in API_VERSIONS:
            issues.append(
                SpecIssue(
                    path="apiVersion",
                    message=f"unsupported apiVersion `{api_version}`"
                    if api_version is not None
                    else "required field `apiVersion` is missing",
                    fix=f"use `{FLAGGER_API_VERSION}`",
                )
            )
        raise SpecError(source, issues)
    model = RESOURCE_KINDS[kind]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SpecError(source, issues_from_validation_error(error, model)) from None


def _expand_lists(data: Any) -> Iterator[tuple[str, Any]]:
    """`kubectl get ... -o yaml` wraps objects in a `List`; yield (suffix, object) pairs."""
    if isinstance(data, dict) and str(data.get("kind", "")).endswith("List") and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            yield f"/items[{index}]", item
    else:
        yield "", data


def load_text(text: str, source: str) -> LoadResult:
    """Parse every document of a YAML stream, collecting all resources and all errors."""
    result = LoadResult()
    documents = yaml.load_all(text, Loader=_YamlLoader)
    number = 0
    while True:
        try:
            data = next(documents)
        except StopIteration:
            break
        except yaml.YAMLError as error:
            result.errors.append(_syntax_error(error, source))
            break
        number += 1
        if data is None:
            continue
        for suffix, item in _expand_lists(data):
            if _foreign(item):
                name = item.get("metadata", {}).get("name", "") if isinstance(item.get("metadata"), dict) else ""
                result.skipped.append(f"{source}#{number}{suffix} {item.get('kind')}/{name}")
                continue
            try:
                result.resources.append(parse_resource(item, f"{source}#{number}{suffix}"))
            except SpecError as error:
                result.errors.append(error)
    return result


def _foreign(data: Any) -> bool:
    """An object of another API group (Secret, Deployment, ...): not ours to judge, so it is skipped."""
    if not isinstance(data, dict):
        return False
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or kind in RESOURCE_KINDS:
        return False
    group = api_version.rpartition("/")[0]
    return group not in {version.rpartition("/")[0] for version in API_VERSIONS}


def _syntax_error(error: yaml.YAMLError, source: str) -> SpecError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    detail = f"{context}, {problem}" if context else str(problem)
    return SpecError(
        source,
        [
            SpecIssue(
                path="",
                message=f"YAML syntax error{where}: {detail}",
                fix="fix the indentation or quoting near that line (a YAML linter shows the exact spot)",
            )
        ],
    )


def parse_yaml(text: str, source: str = "<input>") -> list[Resource]:
    """All resources of a multi-document YAML text; raises the first SpecError (use load_text to get all)."""
    result = load_text(text, source)
    if result.errors:
        raise result.errors[0]
    return result.resources


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def load_files(paths: Sequence[str | Path]) -> LoadResult:
    """Load every file (directories: their *.yaml / *.yml files), collecting every error of every document."""
    result = LoadResult()
    for given in paths:
        for path in _yaml_files(Path(given)):
            source = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                result.errors.append(_file_error(source, "file not found", "check the path"))
                continue
            except (OSError, UnicodeDecodeError) as error:
                result.errors.append(_file_error(source, f"cannot read the file: {error}", "check the file"))
                continue
            loaded = load_text(text, source)
            result.resources.extend(loaded.resources)
            result.errors.extend(loaded.errors)
    return result


def _file_error(source: str, message: str, fix: str) -> SpecError:
    return SpecError(source, [SpecIssue(path="", message=message, fix=fix)])


def canary_from_yaml(text: str, source: str = "<input>") -> Canary:
    """The single Canary in `text`; raises SpecError if the text is invalid or holds no / several Canaries."""
    canaries = [resource for resource in parse_yaml(text, source) if isinstance(resource, Canary)]
    if len(canaries) != 1:
        raise SpecError(
            source,
            [
                SpecIssue(
                    path="",
                    message=f"expected exactly one Canary, found {len(canaries)}",
                    fix="pass a YAML text holding one `kind: Canary` document",
                )
            ],
        )
    return canaries[0]
