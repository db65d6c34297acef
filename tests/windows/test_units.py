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
    # active learners and learning days read the retention's unit (see the tests below)
    assert kinds == ["pair", "retention", "sum", "sum", "sum", "sum", "sum"]


def test_a_distinct_count_reads_the_retention_unit_over_the_same_events() -> None:
    tree = example("education")
    plan = compile_tree(tree)
    retention = plan.readers["weekly_learner_retention"]
    assert isinstance(retention, Quotient) and isinstance(retention.numerator, DiffCount)
    learners = plan.readers["weekly_active_learners"]
    assert learners == DiffCount(retention.numerator.unit, "a")  # entities active in [e - w, e)
    depth = plan.readers["minutes_per_learner"]
    assert isinstance(depth, Quotient) and depth.denominator == learners

    def learners_unit(changed: Tree) -> str:
        reader = compile_tree(changed).readers["weekly_active_learners"]
        assert isinstance(reader, DiffCount)
        return reader.unit.kind + ":" + reader.array

    index = next(i for i, m in enumerate(tree.inputs) if m.name == "weekly_active_learners")
    # not over other events, another window, or for a broken-down metric
    assert learners_unit(_modified(tree, ["inputs", index, "measure", "event"], ["lesson_started"])) == "entity:q"
    assert learners_unit(_modified(tree, ["inputs", index, "window"], "14d")) == "entity:q"
    broken_down = _modified(tree, ["inputs", index, "breakdown"], {"property": "prop.plan", "max_values": 3})
    assert learners_unit(broken_down) == "entity:q"
    assert learners_unit(_modified(tree, ["inputs", index, "window"], "7d")) == "retention:a"


def test_a_per_day_count_reads_the_entity_days_of_the_retention_unit() -> None:
    tree = example("education")
    retention = compile_tree(tree).readers["weekly_learner_retention"]
    assert isinstance(retention, Quotient) and isinstance(retention.numerator, DiffCount)
    assert retention.numerator.unit.params["days"] is True

    def days(changed: Tree) -> tuple[str, bool]:
        plan = compile_tree(changed)
        reader = plan.readers["learning_days_per_learner"]
        assert isinstance(reader, Quotient) and isinstance(reader.numerator, DiffCount)
        kept = [u for u in plan.units if u.kind == "retention"]
        return reader.numerator.unit.kind + ":" + reader.numerator.array, kept[0].params.get("days", False)

    assert days(tree) == ("retention:d", True)
    index = next(i for i, m in enumerate(tree.inputs) if m.name == "learning_days_per_learner")
    numerator = ["inputs", index, "measure", "numerator"]
    # not at a resolution other than a day, over other events, another window,
    # another entity or for a broken-down metric; the retention then keeps no "d"
    assert days(_modified(tree, ["resolution"], "1h")) == ("entity:q", False)
    assert days(_modified(tree, [*numerator, "event"], ["lesson_started"])) == ("entity:q", False)
    assert days(_modified(tree, ["inputs", index, "window"], "14d")) == ("entity:q", False)
    assert days(_modified(tree, [*numerator, "entity"], "prop.device_id")) == ("entity:q", False)
    guard = next(i for i, m in enumerate(tree.guardrails) if m.name == "weekly_learner_retention")
    assert days(_modified(tree, ["guardrails", guard, "window"], "14d")) == ("entity:q", False)
    broken_down = _modified(tree, ["inputs", index, "breakdown"], {"property": "prop.plan", "max_values": 3})
    assert days(broken_down) == ("entity:q", False)


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
