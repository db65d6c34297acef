"""``northstar tree FILE``: draw a North Star tree in the terminal.

The North Star comes first with its window, unit and target; its inputs hang
below it grouped by dimension (breadth, depth, frequency, efficiency) with their
owners; guardrails follow with their direction, tolerance and ``for``; then the
business KPI and any supporting metrics. Rendered with ``rich``: coloured on a
terminal, plain readable text when piped (no TTY). Exit code 0 when drawn, 1
when the file does not validate (its errors go to stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.text import Text
from rich.tree import Tree as RichTree

from streamer.spec.loader import load_definitions
from streamer.spec.model import (
    Condition,
    ConversionMeasure,
    CountMeasure,
    DistinctMeasure,
    EntitiesMeasure,
    EventFilter,
    Guardrail,
    Input,
    Measure,
    Metric,
    PercentileMeasure,
    PerEntityAverageMeasure,
    RatioMeasure,
    RelationalMeasure,
    RetentionMeasure,
    SumMeasure,
    Tree,
)
from streamer.spec.rules import span

if TYPE_CHECKING:
    from streamer.cli import Subparsers

DIMENSIONS = ("breadth", "depth", "frequency", "efficiency")


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "tree",
        help="draw a North Star tree: inputs by dimension, guardrails, KPI",
        description="Draw the North Star tree defined in FILE.",
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="a definitions file")
    parser.add_argument(
        "--width", type=int, default=None, help="columns (default: the terminal's, else 80)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    file: Path = args.file
    if not file.is_file():
        print(f"northstar tree: error: not a file: {file}", file=sys.stderr)
        return 2
    result = load_definitions([file], lint_checks=False)
    if result.errors:
        for issue in result.errors:
            print(issue.format(), file=sys.stderr)
        print(f"northstar tree: {file} does not validate", file=sys.stderr)
        return 1
    Console(width=args.width, highlight=False).print(render(result.trees[0].tree))
    return 0


# --------------------------------------------------------------------------- rendering


def render(tree: Tree) -> RenderableType:
    """The whole tree as one rich renderable (also usable outside the CLI)."""
    header = Text.assemble(
        (tree.tree, "bold"),
        f" - {tree.product} - {tree.game} game - resolution {span(tree.resolution)}",
    )
    star = tree.north_star
    target = f" - target {star.target:g}" if star.target is not None else ""
    top = RichTree(
        Text.assemble(("North Star: ", "bold yellow"), *_title(star), f"\n{_facts(star)}{target}")
    )
    for dimension in DIMENSIONS:
        inputs = [m for m in tree.inputs if m.dimension == dimension]
        if inputs:
            branch = top.add(Text(f"{dimension} ({_plural(len(inputs), 'input')})", "bold cyan"))
            for metric in inputs:
                branch.add(_metric(metric, _owner(metric)))
    parts: list[RenderableType] = [header, top]
    if tree.guardrails:
        guards = RichTree(Text("Guardrails (must not degrade)", "bold red"))
        for guard in tree.guardrails:
            guards.add(_metric(guard, _guard_facts(guard)))
        parts.append(guards)
    else:
        parts.append(Text("Guardrails: none", "red"))
    if tree.kpi is not None:
        kpi = RichTree(Text("Business KPI", "bold green"))
        kpi.add(_metric(tree.kpi, _owner(tree.kpi)))
        parts.append(kpi)
    if tree.supporting:
        support = RichTree(Text("Supporting metrics", "bold"))
        for extra in tree.supporting:
            support.add(_metric(extra, ""))
        parts.append(support)
    return Group(*parts)


def _title(metric: Metric) -> tuple[tuple[str, str], str]:
    return (metric.name, "bold"), f"  {metric.title}"


def _facts(metric: Metric) -> str:
    arrow = "higher is better" if metric.direction == "higher_is_better" else "lower is better"
    return (
        f"{describe_measure(metric.measure)} - window {span(metric.window)}"
        f" - unit {metric.unit} - {arrow}"
    )


def _owner(metric: Input | Guardrail | Metric) -> str:
    owner = getattr(metric, "owner", None)
    return f"owner: {owner}" if owner else "owner: NONE"


def _guard_facts(guard: Guardrail) -> str:
    baseline = (
        "previous window"
        if guard.baseline.kind == "previous_window"
        else f"trailing average of {guard.baseline.periods}"
    )
    return (
        f"tolerance {guard.tolerance:.0%} - for {span(guard.for_)}"
        f" - min sample {guard.min_sample} - baseline {baseline} - {_owner(guard)}"
    )


def _metric(metric: Metric, extra: str) -> Text:
    text = Text.assemble(*_title(metric))
    if extra:
        text.append(f"  [{extra}]", "magenta")
    text.append(f"\n{_facts(metric)}", "dim")
    return text


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------- measures in words


def describe_measure(measure: Measure | str) -> str:
    """A one-line reading of a measure (``sum of minutes over lesson_completed``)."""
    if isinstance(measure, str):
        return measure
    if isinstance(measure, RatioMeasure):
        return f"{_side(measure.numerator)} / {_side(measure.denominator)}"
    if isinstance(measure, CountMeasure):
        return f"count of {_events(measure)}"
    if isinstance(measure, SumMeasure):
        return f"sum of {measure.property} over {_events(measure)}"
    if isinstance(measure, DistinctMeasure):
        per_day = " (per day)" if measure.per_day else ""
        approx = " (approximate)" if measure.approximate else ""
        return f"distinct {measure.entity}{per_day}{approx} with {_events(measure)}"
    if isinstance(measure, EntitiesMeasure):
        text = f"{measure.entity} with {measure.min_events}+ {_events(measure)}"
        if measure.group is not None:
            text = f"{measure.group.by} with {measure.group.min_entities}+ ({text})"
        return text
    if isinstance(measure, PerEntityAverageMeasure):
        what = measure.property or "events"
        return f"average {what} per {measure.entity} over {_events(measure)}"
    if isinstance(measure, PercentileMeasure):
        return f"p{measure.q:g} seconds from first {_events(measure.start)} to next {_events(measure.end)}"
    if isinstance(measure, ConversionMeasure):
        return (
            f"share of {measure.entity} with {measure.min_events}+ {_events(measure.end)} within "
            f"{span(measure.within)} of first {_events(measure.start)}"
        )
    if isinstance(measure, RetentionMeasure):
        return f"retention of {measure.entity} with {_events(measure)}"
    if isinstance(measure, RelationalMeasure):
        text = (
            f"{measure.result} of {measure.item} ({_events(measure.created_by)}) with "
            f"{measure.min_consumers}+ other users' {_events(measure.consumed_by)}"
        )
        if measure.group is not None:
            text += f", {measure.group.by} with {measure.group.min_owners}+ owners"
        return text
    return str(getattr(measure, "kind", "measure"))


def _side(side: Measure | str) -> str:
    return side if isinstance(side, str) else f"({describe_measure(side)})"


def _events(flt: EventFilter) -> str:
    names = " or ".join(flt.event)
    if not flt.where:
        return names
    return f"{names} where {', '.join(_condition(k, c) for k, c in flt.where.items())}"


_OPERATORS = (
    ("eq", "="),
    ("ne", "!="),
    ("in_", " in "),
    ("not_in", " not in "),
    ("gt", ">"),
    ("gte", ">="),
    ("lt", "<"),
    ("lte", "<="),
    ("exists", " exists="),
)


def _condition(key: str, condition: Condition) -> str:
    parts = []
    for attr, op in _OPERATORS:
        value = getattr(condition, attr)
        if value is not None:
            shown = str(value).lower() if isinstance(value, bool) else value
            parts.append(f"{key}{op}{list(value) if isinstance(value, tuple) else shown}")
    return " and ".join(parts)
