"""Breakdown compilation and labelling (pure; the Redis side is in
tests/state/test_breakdowns.py)."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.events.types import Event
from streamer.spec.model import Tree
from streamer.state.keys import Keys
from streamer.windows.breakdown import NONE, OTHER, Labeler, compile_breakdowns, label_value
from streamer.windows.units import compile_tree
from tests.trees import example


def _event(name: str = "subscription_purchased", **props: Any) -> Event:
    return Event(name=name, user="u1", time_ms=0, insert_id=None, props=props, groups={}, user_props={})


def _with_breakdown(path: str, breakdown: dict[str, Any]) -> Tree:
    doc = example("education").model_dump(by_alias=True, exclude_none=True)
    doc[path]["breakdown"] = breakdown
    return Tree.model_validate(doc)


def test_a_breakdown_has_its_own_unit_and_leaves_the_metric_alone() -> None:
    plain = compile_tree(example("education").model_copy(update={"kpi": None}))
    tree = _with_breakdown("kpi", {"property": "prop.plan", "max_values": 3})
    plan = compile_tree(tree)
    (bd,) = [b for name, b in compile_breakdowns(plan).items() if name == "paid_conversions"]
    kpi_unit = plan.readers["paid_conversions"].unit  # type: ignore[union-attr]
    assert bd.unit.kind == kpi_unit.kind == "sum"
    assert bd.unit.fingerprint != kpi_unit.fingerprint
    assert bd.unit.fingerprint not in {u.fingerprint for u in plan.units}  # not a unit of the plan
    assert {u.fingerprint for u in plain.units} <= {u.fingerprint for u in plan.units}
    # a changed cap or field is new state
    other_cap = compile_breakdowns(compile_tree(_with_breakdown("kpi", {"property": "prop.plan", "max_values": 4})))
    other_field = compile_breakdowns(compile_tree(_with_breakdown("kpi", {"property": "prop.tier", "max_values": 3})))
    assert len({bd.unit.fingerprint, other_cap["paid_conversions"].unit.fingerprint,
                other_field["paid_conversions"].unit.fingerprint}) == 3
    # label keys stay in the unit's hash tag
    keys = Keys("ns")
    assert keys.applied(bd.label_unit(3)) == f"ns:{bd.unit.tag}:b3:applied"
    assert keys.unit(bd.label_unit(0), "s") == f"ns:{bd.unit.tag}:b0:s"


def test_label_values_follow_the_key_rules() -> None:
    assert label_value(_event(plan="annual"), "prop.plan") == "annual"
    assert label_value(_event(plan=7), "prop.plan") == "7"
    for odd in (None, True, 2.5, "", {"x": 1}):
        assert label_value(_event(plan=odd), "prop.plan") == NONE
    assert label_value(_event(), "prop.plan") == NONE


def test_labeler_asks_once_and_knows_when_full() -> None:
    plan = compile_tree(_with_breakdown("kpi", {"property": "prop.plan", "max_values": 2}))
    labeler = Labeler(compile_breakdowns(plan)["paid_conversions"])
    events = [_event(plan="a"), _event("lesson_completed", plan="x"), _event(plan=OTHER), _event(), _event(plan="a")]
    # the filter decides what is seen; `other` is never asked about
    assert labeler.candidates(events) == ["a", NONE]
    labeler.learn(["a", NONE], [1, 2], 2)
    assert labeler.full and labeler.candidates([_event(plan="z")]) == []
    split = labeler.split(list(enumerate(events)))
    assert {k: [o for o, _ in v] for k, v in split.items()} == {1: [0, 4], 0: [2], 2: [3]}
    assert labeler.index("z") == 0


def test_labeler_refuses_an_answer_that_breaks_the_rule() -> None:
    plan = compile_tree(_with_breakdown("kpi", {"property": "prop.plan", "max_values": 5}))
    labeler = Labeler(compile_breakdowns(plan)["paid_conversions"])
    with pytest.raises(ValueError, match="refused"):
        labeler.learn(["a"], [0], 1)  # refused although the registry had room
    with pytest.raises(KeyError, match="never asked"):
        labeler.index("b")
