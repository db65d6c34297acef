"""Compiling trees into shared, fingerprinted state units."""

from __future__ import annotations

from typing import Any

from streamer.spec.model import Tree
from streamer.windows.units import DiffCount, Quotient, WindowSum, compile_tree
from tests.trees import example


def _modified(tree: Tree, path: list[str | int], value: Any) -> Tree:
    data = tree.model_dump(by_alias=True, mode="json")
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return Tree.model_validate(data)


def test_identical_state_is_shared_across_metrics() -> None:
    plan = compile_tree(example("education"))
    learners = plan.readers["weekly_active_learners"]
    depth = plan.readers["minutes_per_learner"]
    assert isinstance(learners, DiffCount)
    assert isinstance(depth, Quotient)
    assert depth.denominator == learners  # same unit, not a copy
    # two counts of different events are different units
    abandon = plan.readers["lesson_abandon_rate"]
    assert isinstance(abandon, Quotient)
    assert isinstance(abandon.numerator, WindowSum) and isinstance(abandon.denominator, WindowSum)
    assert abandon.numerator.unit.fingerprint != abandon.denominator.unit.fingerprint
    kinds = sorted(u.kind for u in plan.units)
    assert kinds == ["entity", "entity", "pair", "retention", "sum", "sum", "sum", "sum", "sum"]


def test_changed_definition_changes_fingerprint_and_nothing_else() -> None:
    base = compile_tree(example("education"))
    changed = compile_tree(
        _modified(example("education"), ["north_star", "measure", "property"], "seconds")
    )
    before = {u.fingerprint for u in base.units}
    after = {u.fingerprint for u in changed.units}
    assert len(before - after) == 1 and len(after - before) == 1


def test_resolution_and_horizon_are_part_of_every_fingerprint() -> None:
    base = {u.fingerprint for u in compile_tree(example("education")).units}
    hourly = {
        u.fingerprint
        for u in compile_tree(_modified(example("education"), ["resolution"], "1h")).units
    }
    later = {
        u.fingerprint
        for u in compile_tree(_modified(example("education"), ["lateness"], "30d")).units
    }
    assert base.isdisjoint(hourly) and base.isdisjoint(later)


def test_window_in_buckets_and_horizon() -> None:
    plan = compile_tree(example("education"))
    assert plan.resolution_ms == 86_400_000
    assert plan.horizon_ms == 21 * 86_400_000
    north = plan.readers["weekly_learning_minutes"]
    assert isinstance(north, WindowSum) and north.window_buckets == 7
