"""Flagger's MetricTemplate variables (`{{ name }}`, `{{ variables.x }}`, ...) rendered with missingkey=error."""

from __future__ import annotations

import re

from activities.contracts import MetricQuery

_PLACEHOLDER = re.compile(r"{{\s*\.?([A-Za-z_][\w.]*)\s*}}")


class TemplateError(ValueError):
    pass


def template_model(query: MetricQuery) -> dict[str, str]:
    canary = query.target.canary
    spec = canary.spec
    target = spec.target_ref.name
    model = {
        "name": canary.metadata.name,
        "namespace": canary.metadata.namespace,
        "target": target,
        "service": spec.service.name or target,
        "ingress": spec.ingress_ref.name if spec.ingress_ref else target,
        "route": spec.route_ref.name if spec.route_ref else target,
        "interval": query.interval,
    }
    model.update({f"variables.{k}": v for k, v in query.variables.items()})
    return model


def render_query(template: str, query: MetricQuery) -> str:
    model = template_model(query)

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in model:
            known = ", ".join(sorted(model))
            raise TemplateError(f"template variable {{{{ {key} }}}} is not defined (known: {known})")
        return model[key]

    return _PLACEHOLDER.sub(substitute, template)
