"""Grafana boards and provisioning generated from the definitions.

One board per tree (the North Star with its trend and target, a row of the
inputs the chosen squad owns, a row per input dimension, the guardrails with
their tolerated band, the business KPI, pipeline health; divergence and
degraded guardrails as annotations) and one board per squad (owner) with only
that squad's metrics, across trees. ``grafana_files`` turns them into files with the
provisioning that loads them into Grafana.

Like the Prometheus rules, the boards are generated and checked in
(``grafana/``; ``northstar grafana`` writes them, ``--check`` compares) and a
test proves they equal the generator's output, so the output is deterministic:
trees by name, squads by name, metrics in definition order, panel ids in
order. See docs/grafana.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from streamer.generate.grafana_panels import (
    PanelBuilder,
    change_stat,
    degradation_stat,
    degraded_count_stat,
    describe,
    divergence_stat,
    grafana_unit,
    graph,
    guardrail_band,
    guardrail_status,
    history,
    pipeline,
    squad_guardrails,
    squad_inputs,
    target_stats,
    titled,
    value_stat,
)
from streamer.generate.grafana_queries import DATASOURCE, SQUAD_VARIABLE, Regex, snapshot, target
from streamer.generate.rules import GenerateError
from streamer.spec.model import Guardrail, Metric, Tree

TAG = "northstar"
UID_MAX = 40  # Grafana rejects longer dashboard uids

DIMENSIONS = {
    "breadth": "how many customers get value",
    "depth": "how much value each customer gets",
    "frequency": "how often customers come back",
    "efficiency": "how fast customers reach value",
}

# --------------------------------------------------------------------------- names


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def squad_slug(owner: str) -> str:
    """A file- and uid-safe name for an owner; owners that are not already a slug
    get a hash suffix, so that two owners never share a board."""
    slug = _slug(owner)
    if slug != owner:
        slug = f"{slug}-{hashlib.sha1(owner.encode()).hexdigest()[:6]}"
    return slug


def _uid(kind: str, name: str) -> str:
    uid = f"{TAG}-{kind}-{name}"
    if len(uid) > UID_MAX:
        digest = hashlib.sha1(uid.encode()).hexdigest()[:8]
        uid = f"{uid[: UID_MAX - 9]}-{digest}"
    return uid


def tree_uid(tree: str) -> str:
    return _uid("tree", tree)


def squad_uid(owner: str) -> str:
    return _uid("squad", squad_slug(owner))


def owners(tree: Tree) -> list[str]:
    """Owners named in the tree (inputs, guardrails, KPI), sorted."""
    return sorted({owner for _, metric in tree.metrics() if (owner := _owner(metric))})


def _owner(metric: Metric) -> str | None:
    owner: str | None = getattr(metric, "owner", None)
    return owner


# --------------------------------------------------------------------------- boards


def _board(title: str, uid: str, description: str, tags: list[str]) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, *tags])
        .readonly()
        .time("now-7d", "now")
        .refresh("1m")
        .timezone("utc")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            db.DashboardLink("North Star boards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(False)
            .target_blank(False)
            .icon("apps")
        )
    )


def _row(board: db.Dashboard, title: str, panels: Iterable[PanelBuilder]) -> db.Dashboard:
    board = board.with_row(db.Row(title))
    for panel in panels:
        board = board.with_panel(panel)
    return board


def _metric_panels(tree: str, role: str, metric: Metric) -> list[PanelBuilder]:
    return [
        value_stat(tree, role, metric).span(4),
        change_stat(tree, metric).span(3),
        history(tree, role, metric).span(17),
        *_breakdown_panels(tree, role, metric),
    ]


def breakdown(tree: str, role: str, metric: Metric) -> PanelBuilder:
    """A broken-down metric per label (admitted values, then ``other``):
    stacked for counts and sums, whose labels add up to the value; lines for
    distinct counts, where one entity may count under several labels."""
    assert metric.breakdown is not None
    expr = snapshot("northstar_metric_breakdown_value", "breakdown", tree=tree, metric=metric.name)
    adds_up = metric.measure.kind in ("count", "sum")
    by = metric.breakdown
    note = (
        f"{metric.title} by {by.property}: the first {by.max_values} values seen, then `other`"
        + (" (stacked: the labels add up to the value)." if adds_up else
           " (an entity seen under several labels counts in each).")
    )
    panel = graph(f"{titled(metric)}: by {by.property}", f"{note} {describe(metric, role)}",
                  grafana_unit(metric.unit)).with_target(target(expr, "{{breakdown}}"))
    if adds_up:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(40)
    return panel.span(24)


def _breakdown_panels(tree: str, role: str, metric: Metric) -> list[PanelBuilder]:
    return [breakdown(tree, role, metric)] if metric.breakdown is not None else []


def _guardrail_panels(tree: str, guard: Guardrail) -> list[PanelBuilder]:
    return [
        guardrail_status(tree, guard).span(4),
        degradation_stat(tree, guard).span(3),
        guardrail_band(tree, guard).span(17),
    ]


DIVERGENCE = "North Star divergence"
DEGRADED = "Guardrail degraded"
_ANNOTATION_FORMATS: dict[str, dict[str, Any]] = {
    # the Prometheus fields of an annotation, which the SDK's AnnotationQuery
    # lacks (it has `expr` only); Grafana's Prometheus datasource reads them
    DIVERGENCE: {"tagKeys": "tree", "titleFormat": "North Star divergence in {{tree}}"},
    DEGRADED: {
        "tagKeys": "tree,metric,owner",
        "titleFormat": "Guardrail {{metric}} degraded",
        "textFormat": "owner: {{owner}}",
    },
}


def _annotation(name: str, color: str, expr: str) -> db.AnnotationQuery:
    return (
        db.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .hide(False)
        .icon_color(color)
        .expr(expr)
    )


def _divergence_annotation(trees: Sequence[str]) -> db.AnnotationQuery:
    tree = trees[0] if len(trees) == 1 else Regex("|".join(map(re.escape, trees)))
    expr = f"{snapshot('northstar_divergence_firing', 'tree', tree=tree)} == 1"
    return _annotation(DIVERGENCE, "red", expr)


def _guardrail_annotation(**labels: str) -> db.AnnotationQuery:
    expr = f"{snapshot('northstar_guardrail_degraded', 'tree, metric, owner', **labels)} == 1"
    return _annotation(DEGRADED, "orange", expr)


def _squad_variable(names: Sequence[str]) -> db.CustomVariable:
    # custom variable values are comma-separated; Grafana reads "\," as a comma
    everything = dm.VariableOption(selected=True, text=["All"], value=["$__all"])
    return (
        db.CustomVariable(SQUAD_VARIABLE)
        .label("Squad")
        .description("Owners named in the definitions; their inputs come first.")
        .values(",".join(name.replace(",", "\\,") for name in names))
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(everything)
        .options(
            [everything]
            + [dm.VariableOption(selected=False, text=name, value=name) for name in names]
        )
    )


def tree_board(tree: Tree) -> db.Dashboard:
    """The board of one tree (see the module docstring)."""
    name, north_star = tree.tree, tree.north_star
    board = _board(
        f"North Star: {tree.product} ({name})",
        tree_uid(name),
        f"{north_star.title}, its inputs and guardrails. {tree.description.strip()}".strip(),
        [f"tree:{name}", f"game:{tree.game}"],
    )
    squads = owners(tree)
    if squads:
        board = board.with_variable(_squad_variable(squads))
    board = board.annotation(_divergence_annotation([name])).annotation(
        _guardrail_annotation(tree=name)
    )
    targets = target_stats(name, north_star)
    head: list[PanelBuilder] = [
        value_stat(name, "north_star", north_star).span(6 if targets else 8),
        change_stat(name, north_star).span(4 if targets else 6),
        *targets,
        divergence_stat(name).span(4 if targets else 5),
        degraded_count_stat(name).span(4 if targets else 5),
        history(name, "north_star", north_star).span(24),
        *_breakdown_panels(name, "north_star", north_star),
    ]
    board = _row(board, f"North Star: {north_star.title}", head)
    if squads:
        panels = squad_inputs(name)
        if tree.guardrails:
            panels.append(squad_guardrails(name))
        board = _row(board, f"Your inputs (squad: ${SQUAD_VARIABLE})", panels)
    for dimension, meaning in DIMENSIONS.items():
        inputs = [i for i in tree.inputs if i.dimension == dimension]
        if not inputs:
            continue
        who = ", ".join(sorted({i.owner for i in inputs if i.owner})) or "no owner"
        title = f"{dimension.capitalize()}: {meaning} ({who})"
        board = _row(board, title, [p for i in inputs for p in _metric_panels(name, "input", i)])
    if tree.guardrails:
        panels = [p for g in tree.guardrails for p in _guardrail_panels(name, g)]
        board = _row(board, "Guardrails: value vs tolerated band", panels)
    if tree.kpi is not None:
        board = _row(
            board, f"Business KPI: {tree.kpi.title}", _metric_panels(name, "kpi", tree.kpi)
        )
    return _row(board, "Pipeline health", pipeline(name))


def squad_board(owner: str, trees: Sequence[Tree]) -> db.Dashboard:
    """The board of one owner: its inputs, guardrails and KPIs in every tree."""
    mine = [t for t in trees if owner in owners(t)]
    board = _board(
        f"North Star squad: {owner}",
        squad_uid(owner),
        f"Metrics owned by {owner} in the North Star trees {', '.join(t.tree for t in mine)}.",
        ["squad", f"squad:{owner}"],
    )
    board = board.annotation(_divergence_annotation([t.tree for t in mine]))
    if any(g.owner == owner for t in mine for g in t.guardrails):
        board = board.annotation(_guardrail_annotation(owner=owner))
    for tree in mine:
        panels: list[PanelBuilder] = []
        for role, metric in tree.metrics():
            if _owner(metric) != owner:
                continue
            if isinstance(metric, Guardrail):
                panels += _guardrail_panels(tree.tree, metric)
            else:
                panels += _metric_panels(tree.tree, role, metric)
        board = _row(board, f"{tree.product} ({tree.tree}): {tree.north_star.title}", panels)
    return board


# --------------------------------------------------------------------------- JSON


def _number_panels(dashboard: dm.Dashboard) -> None:
    """Panel ids 1..n in board order (the SDK leaves them unset): Grafana
    needs them unique to link and to edit panels."""
    next_id = 1
    for panel in dashboard.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1


def _annotation_formats(data: dict[str, Any]) -> None:
    for item in data.get("annotations", {}).get("list", []):
        item.update({"step": "1m", "useValueForTime": False, **_ANNOTATION_FORMATS[item["name"]]})


def board_json(board: db.Dashboard) -> dict[str, Any]:
    """The board as Grafana dashboard JSON (a dict)."""
    dashboard = board.build()
    _number_panels(dashboard)
    data: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    _annotation_formats(data)
    return data


def boards(trees: Sequence[Tree]) -> dict[str, dict[str, Any]]:
    """``{file name: dashboard JSON}``: a board per tree, then per squad."""
    ordered = sorted(trees, key=lambda t: t.tree)
    names = [t.tree for t in ordered]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GenerateError(f"trees given more than once: {', '.join(duplicates)}")
    out = {f"tree-{t.tree}.json": board_json(tree_board(t)) for t in ordered}
    squads = sorted({owner for t in ordered for owner in owners(t)})
    for owner in squads:
        out[f"squad-{squad_slug(owner)}.json"] = board_json(squad_board(owner, ordered))
    uids = [b["uid"] for b in out.values()]
    clashes = sorted({u for u in uids if uids.count(u) > 1})
    if clashes:
        raise GenerateError(f"dashboard uids generated more than once: {', '.join(clashes)}")
    return out
