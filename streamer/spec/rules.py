"""Cross-object rules: what the schema alone cannot check.

A rule reads one :class:`~streamer.spec.loader.LoadedTree` (or all of them, for
rules across files) and yields error issues located at the offending key. Rules
run on every tree that passed the schema, and on partial trees the loader cut
broken metrics out of (``LoadedTree.dropped`` names them, so that a reference
to a broken metric is not reported a second time as missing).

A rule that raises is a bug in the rule, not in the definitions: :func:`guarded`
turns the exception into an issue so that ``northstar validate`` still reports
everything else.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from streamer.spec.duration import format_duration
from streamer.spec.horizon import default_horizon
from streamer.spec.issues import DocPath, Issue
from streamer.spec.model import (
    ConversionMeasure,
    CountMeasure,
    DistinctMeasure,
    EventFilter,
    Measure,
    Metric,
    PercentileMeasure,
    RatioMeasure,
    RelationalMeasure,
    SumMeasure,
    walk_measures,
)

if TYPE_CHECKING:  # the loader imports this module to run the rules
    from streamer.spec.loader import LoadedTree

logger = logging.getLogger(__name__)

T = TypeVar("T")
TreeRule = Callable[["LoadedTree"], Iterable[Issue]]
TreesRule = Callable[[Sequence["LoadedTree"]], Iterable[Issue]]


# --------------------------------------------------------------------------- helpers


def span(seconds: int) -> str:
    """A duration as people write windows: whole days as days (``7d``, ``84d``,
    not ``1w``, ``12w``), anything shorter in the largest exact unit."""
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else format_duration(seconds)


def references(measure: Measure) -> list[str]:
    """Metric names a measure's ratios refer to (``numerator: other_metric``), in
    order, including those of inline ratios nested below it."""
    names: list[str] = []
    for m in walk_measures(measure):
        if isinstance(m, RatioMeasure):
            names += [side for side in (m.numerator, m.denominator) if isinstance(side, str)]
    return names


def _ratios(measure: Measure, path: DocPath) -> Iterator[tuple[RatioMeasure, DocPath]]:
    """Every ratio in a measure with its document path (``path`` is the measure's)."""
    if isinstance(measure, RatioMeasure):
        yield measure, path
        for side in ("numerator", "denominator"):
            value = getattr(measure, side)
            if not isinstance(value, str):
                yield from _ratios(value, (*path, side))


def guarded(rule: Callable[[T], Iterable[Issue]], subject: T, file: Path) -> list[Issue]:
    """Run ``rule``; an exception becomes one error issue instead of a traceback."""
    name = getattr(rule, "__name__", repr(rule))
    try:
        return list(rule(subject))
    except Exception as exc:  # any bug in a rule must not hide the other issues
        logger.debug("rule %s crashed on %s", name, file, exc_info=True)
        return [
            Issue(
                "error",
                file,
                None,
                "",
                f"internal error: rule `{name}` crashed ({type(exc).__name__}: {exc})",
                "this is a bug in northstar, not in the file; please report it with the file",
                rule="internal",
            )
        ]


# --------------------------------------------------------------------------- per tree


def unique_names(loaded: LoadedTree) -> Iterator[Issue]:
    """Metric names are unique within a tree (ratios refer to metrics by name)."""
    first: dict[str, int | None] = {}
    for _, metric, location in loaded.located_metrics():
        if metric.name in first:
            yield loaded.issue(
                "error",
                (*location, "name"),
                f"duplicate metric name `{metric.name}`",
                hint=f"first defined on line {first[metric.name]}; rename one of them",
                metric=metric.name,
                rule="unique-names",
            )
        else:
            first[metric.name] = loaded.line_at((*location, "name"))


def ratio_references(loaded: LoadedTree) -> Iterator[Issue]:
    """A ratio's ``numerator``/``denominator`` names a metric of the same tree, not
    itself, and the two sides differ."""
    names = [metric.name for _, metric in loaded.tree.metrics()]
    for _, metric, location in loaded.located_metrics():
        for ratio, path in _ratios(metric.measure, (*location, "measure")):
            for side in ("numerator", "denominator"):
                ref = getattr(ratio, side)
                if not isinstance(ref, str) or ref in loaded.dropped:
                    continue
                if ref == metric.name:
                    yield loaded.issue(
                        "error",
                        (*path, side),
                        f"`{side}` refers to the metric itself",
                        hint="a ratio divides two other metrics or inline measures",
                        metric=metric.name,
                        rule="ratio-cycle",
                    )
                elif ref not in names:
                    close = difflib.get_close_matches(ref, names, n=1)
                    guess = f"did you mean `{close[0]}`? " if close else ""
                    yield loaded.issue(
                        "error",
                        (*path, side),
                        f"`{side}` refers to unknown metric `{ref}`",
                        hint=f"{guess}metrics of this tree: {', '.join(names)}",
                        metric=metric.name,
                        rule="ratio-reference",
                    )
            if ratio.numerator == ratio.denominator:
                shown = ratio.numerator if isinstance(ratio.numerator, str) else "the same measure"
                yield loaded.issue(
                    "error",
                    path,
                    f"ratio of `{shown}` to itself is always 1",
                    hint="divide by a different metric or measure",
                    metric=metric.name,
                    rule="ratio-self",
                )


def ratio_cycles(loaded: LoadedTree) -> Iterator[Issue]:
    """Ratio references form no cycle (a -> b -> a): such values are undefined.
    Each cycle is reported once, at its first metric in file order."""
    graph = {
        metric.name: [r for r in references(metric.measure) if r != metric.name]
        for _, metric in loaded.tree.metrics()
    }
    seen: set[frozenset[str]] = set()
    for start in graph:
        for cycle in _cycles_through(start, graph):
            key = frozenset(cycle)
            if key in seen:
                continue
            seen.add(key)
            location = loaded.metric_path(start) or ()
            yield loaded.issue(
                "error",
                (*location, "measure"),
                f"ratio references form a cycle: {' -> '.join([*cycle, cycle[0]])}",
                hint="a metric cannot be computed from itself; replace one reference by an inline measure",
                metric=start,
                rule="ratio-cycle",
            )


def _cycles_through(start: str, graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """Simple cycles that begin and end at ``start`` (depth-first; trees are small)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        node, trail = stack.pop()
        for nxt in graph.get(node, []):
            if nxt == start:
                yield trail
            elif nxt not in trail and nxt in graph:
                stack.append((nxt, [*trail, nxt]))


def windows(loaded: LoadedTree) -> Iterator[Issue]:
    """Every window is a whole multiple of the resolution (at least one bucket):
    windows are read as whole buckets (docs/semantics.md §1)."""
    resolution = loaded.tree.resolution
    res = span(resolution)
    for _, metric, location in loaded.located_metrics():
        window = span(metric.window)
        if metric.window < resolution:
            yield loaded.issue(
                "error",
                (*location, "window"),
                f"window {window} is shorter than the tree's resolution {res}",
                hint=f"use a window of at least {res}, or a finer `resolution:`",
                metric=metric.name,
                rule="window-resolution",
            )
        elif metric.window % resolution:
            yield loaded.issue(
                "error",
                (*location, "window"),
                f"window {window} is not a whole multiple of the resolution {res}",
                hint="windows are read as whole buckets; pick a multiple of the resolution",
                metric=metric.name,
                rule="window-resolution",
            )
        per_day = any(
            isinstance(m, DistinctMeasure) and m.per_day for m in walk_measures(metric.measure)
        )
        if per_day and 86400 % resolution:
            yield loaded.issue(
                "error",
                ("resolution",),
                f"`per_day` counts need buckets that do not straddle UTC midnight; {res} does not divide 1d",
                hint="use a resolution that divides a day (1d, 12h, 1h, ...)",
                metric=metric.name,
                rule="window-resolution",
            )


def horizons(loaded: LoadedTree) -> Iterator[Issue]:
    """``lateness`` reaches at least as far back as the longest window plus its
    baseline (the default horizon); ``dedupe_horizon`` covers one bucket."""
    tree = loaded.tree
    needed = default_horizon(tree)
    if tree.lateness is not None and tree.lateness < needed:
        yield loaded.issue(
            "error",
            ("lateness",),
            f"lateness {span(tree.lateness)} is shorter than the {span(needed)} "
            "the windows and baselines read",
            hint=f"remove `lateness:` (the default is {span(needed)}) or raise it",
            rule="horizon",
        )
    if tree.dedupe_horizon < tree.resolution:
        yield loaded.issue(
            "error",
            ("dedupe_horizon",) if "dedupe_horizon" in loaded.document else ("resolution",),
            f"dedupe_horizon {span(tree.dedupe_horizon)} is shorter than the resolution "
            f"{span(tree.resolution)}",
            hint="duplicates are remembered per bucket; use at least one bucket",
            rule="horizon",
        )


_BREAKDOWN_KINDS = (CountMeasure, SumMeasure, DistinctMeasure)


def breakdowns(loaded: LoadedTree) -> Iterator[Issue]:
    """``breakdown`` only on count, sum and distinct measures, the ones whose
    value splits into per-value parts."""
    for _, metric, location in loaded.located_metrics():
        if metric.breakdown is not None and not isinstance(metric.measure, _BREAKDOWN_KINDS):
            kind = getattr(metric.measure, "kind", "?")
            yield loaded.issue(
                "error",
                (*location, "breakdown"),
                f"`breakdown` is not supported on a {kind} measure",
                hint="break down count, sum or distinct metrics only; remove `breakdown:`",
                metric=metric.name,
                rule="breakdown",
            )


def step_events(loaded: LoadedTree) -> Iterator[Issue]:
    """Each step of a percentile, conversion or relational measure names at
    least one (non-blank) event type."""
    for _, metric, location in loaded.located_metrics():
        for measure, path in _steps(metric.measure, (*location, "measure")):
            for step in ("start", "end", "created_by", "consumed_by"):
                value = getattr(measure, step, None)
                if isinstance(value, EventFilter) and not any(e.strip() for e in value.event):
                    yield loaded.issue(
                        "error",
                        (*path, step, "event"),
                        f"`{step}` names no event",
                        hint=f"write e.g. `{step}: {{event: lesson_completed}}`",
                        metric=metric.name,
                        rule="step-events",
                    )


def _steps(measure: Measure, path: DocPath) -> Iterator[tuple[Measure, DocPath]]:
    if isinstance(measure, PercentileMeasure | ConversionMeasure | RelationalMeasure):
        yield measure, path
    for ratio, ratio_path in _ratios(measure, path):
        for side in ("numerator", "denominator"):
            value = getattr(ratio, side)
            if isinstance(value, PercentileMeasure | ConversionMeasure | RelationalMeasure):
                yield value, (*ratio_path, side)


TREE_RULES: tuple[TreeRule, ...] = (
    unique_names,
    ratio_references,
    ratio_cycles,
    windows,
    horizons,
    breakdowns,
    step_events,
)


# --------------------------------------------------------------------------- across trees


def one_north_star_per_product(trees: Sequence[LoadedTree]) -> Iterator[Issue]:
    """Two trees for one ``product`` are two North Stars for one product: an
    error on every such file."""
    yield from _same_value(
        trees,
        "product",
        "product `{value}` already has a North Star in {others}",
        "one North Star per product: merge the trees, or make one a set of inputs",
        "one-north-star",
    )


def unique_tree_names(trees: Sequence[LoadedTree]) -> Iterator[Issue]:
    """Tree names are unique: state and exported series are keyed by them."""
    yield from _same_value(
        trees,
        "tree",
        "tree name `{value}` is also used in {others}",
        "rename one of the trees",
        "unique-tree-names",
    )


def _same_value(
    trees: Sequence[LoadedTree], key: str, message: str, hint: str, rule: str
) -> Iterator[Issue]:
    by_value: dict[str, list[LoadedTree]] = {}
    for loaded in trees:
        by_value.setdefault(str(getattr(loaded.tree, key)), []).append(loaded)
    for value, group in by_value.items():
        for loaded in group if len(group) > 1 else ():
            others = ", ".join(f"{o.file}:{o.line_at((key,))}" for o in group if o is not loaded)
            yield loaded.issue(
                "error", (key,), message.format(value=value, others=others), hint=hint, rule=rule
            )


TREES_RULES: tuple[TreesRule, ...] = (one_north_star_per_product, unique_tree_names)


# --------------------------------------------------------------------------- runners


def check_tree(loaded: LoadedTree) -> list[Issue]:
    """Every per-tree rule's issues."""
    return [issue for rule in TREE_RULES for issue in guarded(rule, loaded, loaded.file)]


def check_trees(trees: Sequence[LoadedTree]) -> list[Issue]:
    """Every cross-tree rule's issues (for the files loaded together)."""
    where = trees[0].file if trees else Path(".")
    return [issue for rule in TREES_RULES for issue in guarded(rule, trees, where)]


def metric_of(loaded: LoadedTree, name: str) -> Metric | None:
    """The first metric called ``name`` in the tree, if any."""
    return next((m for _, m in loaded.tree.metrics() if m.name == name), None)
