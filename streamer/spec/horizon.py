"""How far back state must reach: the lateness horizon of a tree (docs/semantics.md §2)."""

from __future__ import annotations

from streamer.spec.model import Guardrail, Metric, RetentionMeasure, Tree, walk_measures


def lookback(metric: Metric) -> int:
    """Seconds of history one value of ``metric`` reads: its window, twice for retention."""
    factor = 2 if any(isinstance(m, RetentionMeasure) for m in walk_measures(metric.measure)) else 1
    return metric.window * factor


def baseline_span(metric: Metric) -> int:
    """Seconds the metric's baseline reaches back beyond its own value."""
    if isinstance(metric, Guardrail) and metric.baseline.kind == "trailing_average":
        return metric.window * metric.baseline.periods
    return metric.window


def default_horizon(tree: Tree) -> int:
    """The smallest lateness horizon that keeps every value and baseline exact."""
    return max(lookback(m) + baseline_span(m) for _, m in tree.metrics())


def lateness_horizon(tree: Tree) -> int:
    """The tree's lateness horizon in seconds: ``lateness:`` if set, else the default."""
    return tree.lateness if tree.lateness is not None else default_horizon(tree)
