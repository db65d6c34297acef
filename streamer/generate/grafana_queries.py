"""The PromQL of the Grafana boards: writing it and reading it back.

Every query reads the families of docs/prometheus.md. Snapshot gauges go
through ``max by (...)``, as the generated rules do, so that several exporter
replicas draw one line, not one per instance. Every target names the
datasource by its fixed uid (:data:`DATASOURCE_UID`), the one
``grafana/provisioning`` creates. The only template variables are ``$squad``
(a regex over owners) and Grafana's ``$__rate_interval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.models import dashboard as dm

from streamer.spec.model import Guardrail

DATASOURCE_UID = "northstar-prometheus"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
SQUAD_VARIABLE = "squad"
SQUAD = "$" + SQUAD_VARIABLE
RATE_INTERVAL = "$__rate_interval"


# --------------------------------------------------------------------------- PromQL


def literal(value: str) -> str:
    """A PromQL string literal: double-quoted, escaped."""
    return json.dumps(value, ensure_ascii=False)


class Regex(str):
    """A label value matched as a regular expression (``=~``), not literally."""

    __slots__ = ()


def selector(name: str, **labels: str) -> str:
    """``name{a="x",b=~"y"}``: :class:`Regex` values become regex matchers."""
    matchers = [
        f"{key}{'=~' if isinstance(value, Regex) else '='}{literal(value)}"
        for key, value in labels.items()
    ]
    return f"{name}{{{','.join(matchers)}}}"


def snapshot(family: str, by: str, **labels: str) -> str:
    """A snapshot gauge, replicas counted once: ``max by (by) (family{...})``."""
    return f"max by ({by}) ({selector(family, **labels)})"


def tolerated_limit(tree: str, guard: Guardrail) -> str:
    """The value at which the guardrail starts to degrade: the baseline moved by
    ``tolerance`` (relative, as the evaluator measures it) in its bad direction."""
    baseline = snapshot("northstar_metric_baseline", "tree, metric", tree=tree, metric=guard.name)
    tolerance = snapshot(
        "northstar_guardrail_tolerance_ratio", "tree, metric", tree=tree, metric=guard.name
    )
    sign = "+" if guard.direction == "lower_is_better" else "-"
    return f"{baseline} {sign} {tolerance} * abs({baseline})"


def degradation(tree: str, guard: Guardrail) -> str:
    """The guardrail's relative move vs its baseline, positive when worse: the
    evaluator's ``degradation`` when it judged one, else the same formula from
    value and baseline (the evaluator withholds it below ``min_sample``, and a
    squad still wants to see where its guardrail is heading)."""
    judged = snapshot(
        "northstar_guardrail_degradation_ratio", "metric", tree=tree, metric=guard.name
    )
    value = snapshot("northstar_metric_value", "metric", tree=tree, metric=guard.name)
    baseline = snapshot("northstar_metric_baseline", "metric", tree=tree, metric=guard.name)
    worse = (
        f"{value} - {baseline}" if guard.direction == "lower_is_better" else f"{baseline} - {value}"
    )
    return f"{judged} or (({worse}) / abs({baseline}))"


def target(expr: str, legend: str, ref_id: str = "A", *, instant: bool = False) -> prom.Dataquery:
    query = prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).datasource(DATASOURCE)
    return query.instant() if instant else query.range()


# --------------------------------------------------------------------------- reading boards


@dataclass(frozen=True)
class Query:
    """One PromQL query a board runs: a panel target or an annotation;
    ``where`` names it for humans, ``range`` tells a range from an instant query."""

    kind: Literal["panel", "annotation"]
    where: str
    expr: str
    range: bool

    def with_values(self, values: Mapping[str, str]) -> Query:
        """The query with its template variables replaced (:func:`interpolate`)."""
        return replace(self, expr=interpolate(self.expr, values))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a board JSON, rows and the panels of collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in board.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(board: dict[str, Any]) -> list[Query]:
    """Every query of a board JSON: panel targets, then annotations."""
    found = [
        Query(
            "panel",
            f"panel {p['id']} {p['title']!r} target {t['refId']}",
            t["expr"],
            bool(t.get("range")),
        )
        for p in panels(board)
        for t in p.get("targets", [])
    ]
    found += [
        Query("annotation", f"annotation {a['name']!r}", a["expr"], True)
        for a in board.get("annotations", {}).get("list", [])
        if "expr" in a
    ]
    return found


def interpolate(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with Grafana variables (``$name``, ``${name}``) replaced by
    single ``values``, as Grafana does before sending the query."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
