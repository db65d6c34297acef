"""Hand-computed cases proving tests/reference.py itself, measure by measure.

Each test builds a tiny Amplitude log whose expected values are worked out by
hand in comments, so the reference is checked against docs/semantics.md
independently of the engine it is later compared with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ruamel.yaml import YAML

from streamer.spec.horizon import lateness_horizon
from streamer.spec.model import Tree
from tests.reference import (
    evaluate,
    horizon_s,
    ingest,
    percentile,
    reference_counts,
    reference_values,
    window_end,
)

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
D0 = 1_709_510_400_000  # 2024-03-04T00:00:00Z
NOW = D0 + 60 * DAY
DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"


def amp(
    name: str | None,
    user: Any,
    t: Any,
    iid: str | None = None,
    *,
    groups: dict[str, Any] | None = None,
    **props: Any,
) -> bytes:
    """One Amplitude HTTP v2 event line."""
    doc: dict[str, Any] = {"event_type": name, "user_id": user, "time": t}
    if iid is not None:
        doc["insert_id"] = iid
    if props:
        doc["event_properties"] = props
    if groups:
        doc["groups"] = groups
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def make_tree(measures: dict[str, dict[str, Any]], window: str = "7d", **fields: Any) -> Tree:
    """A tree whose first measure is the north star and the others supporting metrics."""

    def metric(name: str, measure: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "title": name,
            "description": name,
            "unit": "u",
            "window": window,
            "measure": measure,
        }

    (first, first_measure), *rest = measures.items()
    doc = {
        "tree": "t",
        "product": "p",
        "game": "attention",
        "north_star": metric(first, first_measure),
        "inputs": [],
        "supporting": [metric(n, m) for n, m in rest],
        **fields,
    }
    return Tree.model_validate(doc)


def values(lines: list[bytes], tree: Tree, at_ms: int) -> dict[str, float | None]:
    return reference_values(lines, tree, at_ms, NOW)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def assert_values(got: dict[str, float | None], expected: dict[str, float | None]) -> None:
    for name, want in expected.items():
        assert close(got[name], want), f"{name}: expected {want}, got {got[name]}"


# --------------------------------------------------------------------------- windows


def test_window_end_rounds_up_to_the_resolution() -> None:
    assert window_end(D0, 86400) == D0
    assert window_end(D0 + 1, 86400) == D0 + DAY
    assert window_end(D0 + DAY - 1, 86400) == D0 + DAY
    assert window_end(D0 + 90 * MIN, 3600) == D0 + 2 * HOUR


@pytest.mark.parametrize("q", [1, 25, 33.3, 50, 90, 99.9, 100])
@pytest.mark.parametrize("xs", [[7.0], [3.0, 1.0], [5.0, 1.0, 4.0], [1.0, 2.0, 2.0, 10.0, 0.5]])
def test_percentile_is_numpys_linear_default(xs: list[float], q: float) -> None:
    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)


def test_percentile_of_nothing_is_null() -> None:
    assert percentile([], 50) is None


# --------------------------------------------------------------------------- count, sum, filters


def test_count_covers_e_minus_w_inclusive_to_e_exclusive() -> None:
    tree = make_tree({"n": {"kind": "count", "event": "a"}})
    lines = [
        amp("a", "u1", D0 - 1),  # before the window
        amp("a", "u1", D0),  # first millisecond of the window
        amp("a", "u2", D0 + 7 * DAY - 1),  # last millisecond
        amp("a", "u2", D0 + 7 * DAY),  # = E: outside
        amp("b", "u1", D0 + DAY),  # another event type
    ]
    assert values(lines, tree, D0 + 7 * DAY) == {"n": 2}
    # Between midnights the window ends at the next bucket boundary.
    assert values(lines, tree, D0 + 6 * DAY + 1) == {"n": 2}
    assert values(lines, tree, D0 + 7 * DAY + 1) == {"n": 2}  # [D0+1d, D0+8d): D0+7d-1, D0+7d
    assert values(lines, tree, D0 + 8 * DAY) == {"n": 2}
    assert values(lines, tree, D0 + 20 * DAY) == {"n": 0}


def test_sum_skips_values_that_are_not_numbers() -> None:
    tree = make_tree({"m": {"kind": "sum", "event": "done", "property": "minutes"}})
    lines = [
        amp("done", "u1", D0 + HOUR, minutes=10),
        amp("done", "u1", D0 + 2 * HOUR, minutes=2.5),
        amp("done", "u1", D0 + 3 * HOUR, minutes="7"),  # string: skipped
        amp("done", "u2", D0 + 4 * HOUR, minutes=True),  # boolean: skipped
        amp("done", "u2", D0 + 5 * HOUR, minutes=None),  # null: skipped
        amp("done", "u2", D0 + 6 * HOUR),  # missing: skipped
        amp("done", "u2", D0 + 7 * HOUR, minutes=0),
        amp("done", "u2", D0 + 8 * HOUR, minutes={"v": 3}),  # object: skipped
    ]
    assert values(lines, tree, D0 + 7 * DAY) == {"m": 12.5}
    assert values(lines, tree, D0 + 30 * DAY) == {"m": 0}  # nothing: 0, not null


def test_where_conditions() -> None:
    tree = make_tree(
        {
            "pro": {"kind": "count", "event": "buy", "where": {"plan": "pro"}},
            "not_pro": {"kind": "count", "event": "buy", "where": {"plan": {"ne": "pro"}}},
            "in_": {"kind": "count", "event": "buy", "where": {"plan": {"in": ["pro", 1]}}},
            "not_in": {"kind": "count", "event": "buy", "where": {"plan": {"not_in": ["pro", 1]}}},
            "big": {"kind": "count", "event": "buy", "where": {"plan": {"gt": 1}}},
            "band": {"kind": "count", "event": "buy", "where": {"plan": {"gte": 1, "lt": 2}}},
            "flag": {"kind": "count", "event": "buy", "where": {"plan": True}},
            "has": {"kind": "count", "event": "buy", "where": {"plan": {"exists": True}}},
            "hasnt": {"kind": "count", "event": "buy", "where": {"plan": {"exists": False}}},
        }
    )
    plans: list[Any] = ["pro", "Pro", 1, 1.0, 1.5, 2, True, "2", None]
    lines = [amp("buy", "u", D0 + i * HOUR, plan=p) for i, p in enumerate(plans)]
    lines.append(amp("buy", "u", D0 + 20 * HOUR))  # no plan at all
    lines.append(amp("sell", "u", D0 + 21 * HOUR, plan="pro"))  # other event
    # plan values: "pro" "Pro" 1 1.0 1.5 2 True "2" null <missing>
    assert_values(
        values(lines, tree, D0 + 7 * DAY),
        {
            "pro": 1,  # "pro"
            "not_pro": 9,  # all but "pro" (null and missing included)
            "in_": 3,  # "pro", 1, 1.0 (numbers compare as numbers; True is not 1)
            "not_in": 7,
            "big": 2,  # 1.5, 2 ("2" and True are not numbers)
            "band": 3,  # 1, 1.0, 1.5
            "flag": 1,  # True only, not 1
            "has": 8,  # present and not null: all but null and missing
            "hasnt": 2,
        },
    )


# --------------------------------------------------------------------------- distinct


def test_distinct_and_per_day() -> None:
    tree = make_tree(
        {
            "users": {"kind": "distinct", "event": "a"},
            "user_days": {"kind": "distinct", "event": "a", "per_day": True},
            "accounts": {"kind": "distinct", "event": "a", "entity": "prop.account"},
            # HyperLogLog: the reference is exact; tiny counts are exact in practice too
            "approx_users": {"kind": "distinct", "event": "a", "approximate": True},
        }
    )
    lines = [
        amp("a", "u1", D0 + HOUR, account=5),
        amp("a", "u1", D0 + 2 * HOUR, account="5"),  # same key as the integer 5
        amp("a", "u1", D0 + DAY + HOUR, account=5.0),  # a float is not a key
        amp("a", "u2", D0 + DAY - 1, account=""),  # empty string is not a key
        amp("a", "u2", D0 + DAY, account=True),  # nor a boolean; next UTC date
        amp("a", "u3", D0 + 7 * DAY, account="x"),  # outside the window
    ]
    # users {u1, u2}; (user, date): (u1, d0) (u1, d1) (u2, d0) (u2, d1); accounts {"5"}
    assert_values(
        values(lines, tree, D0 + 7 * DAY),
        {"users": 2, "user_days": 4, "accounts": 1, "approx_users": 2},
    )


# --------------------------------------------------------------------------- entities


def test_entities_with_min_events_and_latest_group() -> None:
    base = {"kind": "entities", "event": "a", "min_events": 2}
    tree = make_tree(
        {
            "active": base,
            "orgs2": {**base, "group": {"by": "group.org", "min_entities": 2}},
            "orgs1": {**base, "group": {"by": "group.org", "min_entities": 1}},
        }
    )
    t = D0 + DAY
    lines = [
        # u1: 2 events, org a then (later) org b -> b
        amp("a", "u1", t + HOUR, groups={"org": "a"}),
        amp("a", "u1", t + 2 * HOUR, groups={"org": "b"}),
        # u2: 3 events, org b
        amp("a", "u2", t, groups={"org": "b"}),
        amp("a", "u2", t),
        amp("a", "u2", t),
        # u3: one event only: does not qualify
        amp("a", "u3", t, groups={"org": "b"}),
        # u4: two events at the same time, orgs a and c -> the greater value, c
        amp("a", "u4", t + 5 * HOUR, groups={"org": "c"}),
        amp("a", "u4", t + 5 * HOUR, groups={"org": "a"}),
        # u5: its org comes from another event type, dated after E
        amp("a", "u5", t),
        amp("a", "u5", t),
        amp("other", "u5", D0 + 8 * DAY, groups={"org": "b"}),
        amp("other", "u5", D0 - DAY, groups={"org": "a"}),  # older: not the latest
        # u6: 2 events but no usable org anywhere (empty string, float)
        amp("a", "u6", t, groups={"org": ""}),
        amp("a", "u6", t, groups={"org": 1.5}),
        # u7: 1 event in the window, 1 before it: does not qualify
        amp("a", "u7", D0 - 1, groups={"org": "c"}),
        amp("a", "u7", t, groups={"org": "c"}),
    ]
    # qualifying: u1(b) u2(b) u4(c) u5(b) u6(none) -> 5 entities;
    # groups: b has 3, c has 1
    assert_values(values(lines, tree, D0 + 7 * DAY), {"active": 5, "orgs2": 1, "orgs1": 2})


# --------------------------------------------------------------------------- per-entity average, ratio


def test_per_entity_average_and_ratios() -> None:
    tree = make_tree(
        {
            "avg_minutes": {"kind": "per_entity_average", "event": "a", "property": "minutes"},
            "events_per_user": {"kind": "per_entity_average", "event": "a"},
            "minutes": {"kind": "sum", "event": "a", "property": "minutes"},
            "users": {"kind": "distinct", "event": "a"},
            "per_user": {"kind": "ratio", "numerator": "minutes", "denominator": "users"},
            "refunds": {
                "kind": "ratio",
                "numerator": {"kind": "count", "event": "refund"},
                "denominator": {"kind": "count", "event": "buy"},
            },
            "null_num": {"kind": "ratio", "numerator": "avg_minutes", "denominator": "users"},
        }
    )
    lines = [
        amp("a", "u1", D0 + HOUR, minutes=10),
        amp("a", "u1", D0 + 2 * HOUR, minutes=20),
        amp("a", "u2", D0 + 3 * HOUR, minutes="x"),  # counts as a user, adds nothing
        amp("refund", "u1", D0 + 4 * HOUR),
    ]
    assert_values(
        values(lines, tree, D0 + 7 * DAY),
        {
            "avg_minutes": 15.0,  # 30 / 2
            "events_per_user": 1.5,  # 3 events / 2
            "per_user": 15.0,
            "refunds": None,  # 1 / 0
            "null_num": 7.5,
        },
    )
    later = values(lines, tree, D0 + 30 * DAY)  # nothing in the window
    assert_values(
        later,
        {
            "avg_minutes": None,
            "events_per_user": None,
            "per_user": None,  # 0 / 0
            "refunds": None,
            "null_num": None,  # null / 0
        },
    )
    with_buy = [*lines, amp("buy", "u3", D0 + 5 * HOUR), amp("buy", "u3", D0 + 6 * HOUR)]
    assert values(with_buy, tree, D0 + 7 * DAY)["refunds"] == 0.5


def test_ratio_of_a_named_metric_uses_that_metrics_own_window() -> None:
    tree = make_tree({"ns": {"kind": "count", "event": "a"}}, window="1d")
    doc = tree.model_dump(by_alias=True)
    doc["supporting"] = [
        {
            "name": "weekly",
            "title": "w",
            "description": "w",
            "unit": "u",
            "window": "7d",
            "measure": {"kind": "count", "event": "a"},
        },
        {
            "name": "share",
            "title": "s",
            "description": "s",
            "unit": "u",
            "window": "1d",
            "measure": {"kind": "ratio", "numerator": "ns", "denominator": "weekly"},
        },
    ]
    tree = Tree.model_validate(doc)
    lines = [amp("a", "u", D0 + i * DAY + HOUR) for i in range(7)]
    # ns (1d) = 1, weekly (7d) = 7
    assert_values(values(lines, tree, D0 + 7 * DAY), {"ns": 1, "weekly": 7, "share": 1 / 7})


# --------------------------------------------------------------------------- retention


def test_retention() -> None:
    tree = make_tree({"ret": {"kind": "retention", "event": "a"}})
    lines = [
        *(amp("a", u, D0 + HOUR) for u in ("u1", "u2", "u3", "u4")),  # previous window
        amp("a", "u4", D0 - 1),  # before the previous window
        amp("a", "u1", D0 + 7 * DAY),  # current window starts at E - w
        amp("a", "u3", D0 + 14 * DAY - 1),
        amp("a", "u5", D0 + 8 * DAY),  # new user: not in P
        amp("a", "u2", D0 + 14 * DAY),  # = E: outside
    ]
    assert values(lines, tree, D0 + 14 * DAY) == {"ret": 0.5}  # {u1, u3} / {u1..u4}
    assert values(lines, tree, D0 + 7 * DAY) == {"ret": 1.0}  # P = {u4}, active again
    assert values(lines, tree, D0) == {"ret": None}  # empty P


# --------------------------------------------------------------------------- percentile


PCT_LINES = [
    amp("signed_up", "u1", D0 + HOUR),
    amp("done", "u1", D0 + HOUR + MIN),  # 60 s
    amp("done", "u2", D0 + HOUR),  # before u2's start: ignored
    amp("signed_up", "u2", D0 + 2 * HOUR),
    amp("done", "u2", D0 + 2 * HOUR + 2 * MIN),  # 120 s
    amp("done", "u2", D0 + 2 * HOUR + 3 * MIN),  # not the first: ignored
    amp("signed_up", "u3", D0 + 3 * HOUR),
    amp("signed_up", "u3", D0 + 3 * HOUR + 10_000),  # not the earliest start
    amp("done", "u3", D0 + 3 * HOUR + 5 * MIN),  # 300 s
    amp("signed_up", "u4", D0 + 5 * HOUR),  # never finishes
    amp("signed_up", "u5", D0 + 6 * DAY),
    amp("done", "u5", D0 + 7 * DAY + 10_000),  # at or after E = D0+7d: not yet
    amp("signed_up", "u6", D0 - 1),  # starts before the window
    amp("done", "u6", D0 + HOUR),
    amp("signed_up", "u7", D0 + 4 * HOUR),
    amp("done", "u7", D0 + 4 * HOUR),  # same time: not strictly after
    amp("done", "u7", D0 + 4 * HOUR + 1500),  # 1.5 s
]


def pct_tree(q: float) -> Tree:
    return make_tree(
        {
            "p": {
                "kind": "percentile",
                "q": q,
                "start": {"event": "signed_up"},
                "end": {"event": "done"},
            }
        }
    )


def test_percentile_even_and_odd() -> None:
    at = D0 + 7 * DAY
    # durations [1.5, 60, 120, 300]: median h = 1.5 -> 60 + 0.5 * 60 = 90
    assert values(PCT_LINES, pct_tree(50), at) == {"p": 90.0}
    # q = 90: h = 2.7 -> 120 + 0.7 * 180 = 246
    assert values(PCT_LINES, pct_tree(90), at)["p"] == pytest.approx(246.0, rel=1e-12)
    assert values(PCT_LINES, pct_tree(100), at) == {"p": 300.0}
    # odd: drop u7 -> [60, 120, 300], median 120
    odd = [line for line in PCT_LINES if b'"u7"' not in line]
    assert values(odd, pct_tree(50), at) == {"p": 120.0}
    # one day later: window [D0+1d, D0+8d) holds only u5: 1 d + 10 s
    assert values(PCT_LINES, pct_tree(50), D0 + 8 * DAY) == {"p": 86_410.0}
    assert values(PCT_LINES, pct_tree(50), D0 + 30 * DAY) == {"p": None}


def test_percentile_late_start_event_moves_the_start() -> None:
    at = D0 + 7 * DAY
    # u1 turns out to have signed up the day before: it leaves the window's cohort
    late = [*PCT_LINES, amp("signed_up", "u1", D0 - DAY)]
    assert values(late, pct_tree(50), at) == {"p": 120.0}  # [1.5, 120, 300]
    # ... and a start older than the lateness horizon (14d) is dropped instead
    too_late = [*PCT_LINES, amp("signed_up", "u1", D0 + 7 * DAY + 10_000 - 14 * DAY - 1)]
    assert reference_counts(too_late, pct_tree(50), NOW)["late"] == 1
    assert values(too_late, pct_tree(50), at) == {"p": 90.0}


# --------------------------------------------------------------------------- conversion


def test_conversion_with_min_events_and_within() -> None:
    tree = make_tree(
        {
            "conv": {
                "kind": "conversion",
                "start": {"event": "s"},
                "end": {"event": "e"},
                "within": "1d",
                "min_events": 2,
            }
        }
    )
    s = D0 + HOUR
    late_s = D0 + 6 * DAY + 23 * HOUR
    lines = [
        amp("s", "u1", s),
        amp("e", "u1", s + HOUR),
        amp("e", "u1", s + 2 * HOUR),  # 2nd end within 1d, before E: converted
        amp("s", "u2", s),
        amp("e", "u2", s + HOUR),
        amp("e", "u2", s + 25 * HOUR),  # beyond within: not converted
        amp("s", "u3", s),
        amp("e", "u3", s),  # at s: not after it
        amp("e", "u3", s + DAY),  # exactly s + within: counts
        amp("e", "u3", s + 10 * MIN),  # converted (2 in (s, s+1d])
        amp("s", "u4", late_s),
        amp("e", "u4", late_s + 30 * MIN),
        amp("e", "u4", late_s + 2 * HOUR),  # = D0+7d+1h: not before E = D0+7d
        amp("s", "u5", D0 - HOUR),  # before the window
        amp("e", "u5", D0 + HOUR),
        amp("e", "u5", D0 + 2 * HOUR),
    ]
    # cohort u1 u2 u3 u4, converted u1 u3
    assert values(lines, tree, D0 + 7 * DAY) == {"conv": 0.5}
    # [D0+1d, D0+8d): cohort u4, converted
    assert values(lines, tree, D0 + 8 * DAY) == {"conv": 1.0}
    assert values(lines, tree, D0 + 30 * DAY) == {"conv": None}


# --------------------------------------------------------------------------- relational


def relational_tree() -> Tree:
    def rel(result: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "relational",
            "item": "prop.learning_id",
            "created_by": {"event": "shared"},
            "consumed_by": {"event": "viewed"},
            "min_consumers": 2,
            "result": result,
            **extra,
        }

    return make_tree(
        {
            "owners": rel("owners"),
            "items": rel("items"),
            "consumptions": rel("consumptions"),
            "groups1": rel("groups", group={"by": "group.org", "min_owners": 1}),
            "groups2": rel("groups", group={"by": "group.org", "min_owners": 2}),
        }
    )


def view(user: str, item: Any, t: int) -> bytes:
    return amp("viewed", user, t, learning_id=item)


def test_relational() -> None:
    t = D0 + DAY
    lines = [
        # L1: alice's; viewed by bob (twice), carol and alice herself -> 2 consumers
        amp("shared", "alice", D0 + HOUR, learning_id="L1", groups={"org": "x"}),
        view("bob", "L1", t),
        view("bob", "L1", t + HOUR),
        view("carol", "L1", t),
        view("alice", "L1", t),
        # L2: shared by bob and alice at the same time: owner alice (smaller id);
        # viewers alice, carol -> 1 consumer (had bob owned it: 2)
        amp("shared", "bob", D0 + 2 * HOUR, learning_id="L2"),
        amp("shared", "alice", D0 + 2 * HOUR, learning_id="L2"),
        view("alice", "L2", t),
        view("carol", "L2", t),
        # L3: viewed before the share exists (in log and in time); erin shares later
        view("bob", "L3", t),
        view("carol", "L3", t),
        view("dave", "L3", t),
        erin_shares := amp("shared", "erin", D0 + 3 * DAY, learning_id="L3", groups={"org": "x"}),
        # L4: frank shares; greg's earlier share arrives late (within the 14d horizon)
        amp("shared", "frank", D0 + HOUR, learning_id="L4"),
        view("frank", "L4", t),
        view("heidi", "L4", t),
        # L5: viewed by many, never shared: no owner
        view("bob", "L5", t),
        view("carol", "L5", t),
        view("dave", "L5", t),
        # L6: one viewer in the window, one before it
        amp("shared", "alice", D0 + HOUR, learning_id="L6"),
        view("bob", "L6", D0 - DAY),
        view("carol", "L6", t),
        # an integer item id is the key "7"
        amp("shared", "ivan", D0 + HOUR, learning_id=7),
        view("bob", "7", t),
        view("carol", 7, t),
        # a float item id is no key at all
        amp("shared", "judy", D0 + HOUR, learning_id=8.0),
        view("bob", 8.0, t),
        view("carol", 8.0, t),
        # organizations: alice moves to y after the window (latest counts), greg in y
        amp("other", "alice", D0 + 8 * DAY, groups={"org": "y"}),
        amp("other", "greg", D0 + 2 * HOUR, groups={"org": "y"}),
        amp("shared", "greg", D0 - 2 * DAY, learning_id="L4"),  # late share
    ]
    # broadcast at E = D0+7d: L1 (alice, 2), L3 (erin, 3), L4 (greg: frank, heidi = 2),
    # "7" (ivan, 2). Owners alice erin greg ivan; orgs: alice y, erin x, greg y, ivan none.
    assert_values(
        values(lines, tree := relational_tree(), D0 + 7 * DAY),
        {"owners": 4, "items": 4, "consumptions": 9, "groups1": 2, "groups2": 1},
    )
    # Without greg's late share, frank owns L4 and has 1 consumer: L4 drops out,
    # and org y keeps only alice.
    assert_values(
        values(lines[:-1], tree, D0 + 7 * DAY),
        {"owners": 3, "items": 3, "consumptions": 7, "groups1": 2, "groups2": 0},
    )
    # Before erin's share arrives, L3 has no owner: only L1 (alice, org x so far).
    assert_values(
        values(lines[: lines.index(erin_shares)], tree, D0 + 7 * DAY),
        {"owners": 1, "items": 1, "consumptions": 2, "groups1": 1, "groups2": 0},
    )


def test_relational_on_the_shipped_learning_users_tree() -> None:
    tree = load("learning_users")
    t = D0 + DAY
    lines: list[bytes] = []
    # five owners in org "acme", each with one learning viewed by two others
    for i in range(5):
        owner = f"o{i}"
        lines.append(amp("learning_shared", owner, t, learning_id=f"L{i}", groups={"org": "acme"}))
        lines += [amp("learning_viewed", v, t + HOUR, learning_id=f"L{i}") for v in ("v1", "v2")]
    # a sixth in "tiny"
    lines.append(amp("learning_shared", "o5", t, learning_id="L5", groups={"org": "tiny"}))
    lines += [amp("learning_viewed", v, t + HOUR, learning_id="L5") for v in ("v1", "v2", "v3")]
    lines += [amp("learning_shared", "o0", t + 2 * DAY)]  # no learning id: ignored
    got = values(lines, tree, D0 + 7 * DAY)
    assert_values(
        got,
        {
            "weekly_learning_users": 6,
            "broadcasted_learnings": 6,
            "consumption_of_learnings": 13,
            "activated_organizations": 1,
            "weekly_sharer_retention": None,  # nobody shared in the previous week
        },
    )
    # a week later: previous window held the 6 sharers (o0 twice), current none
    assert values(lines, tree, D0 + 14 * DAY)["weekly_sharer_retention"] == 0.0


# --------------------------------------------------------------------------- lateness


def count_tree(**fields: Any) -> Tree:
    return make_tree({"n": {"kind": "count", "event": "a"}}, **fields)


def test_lateness_boundary_is_inclusive() -> None:
    tree = count_tree()
    assert lateness_horizon(tree) == 14 * 86400  # 7d window + 7d baseline
    lines = [
        amp("a", "u", D0 + 20 * DAY),  # watermark D0+20d
        amp("a", "u", D0 + 6 * DAY),  # = watermark - H: accepted
        amp("a", "u", D0 + 6 * DAY - 1),  # 1 ms older: late
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 2, "late": 1}
    assert values(lines, tree, D0 + 7 * DAY) == {"n": 1}
    # a larger `lateness:` keeps it
    wide = count_tree(lateness="30d")
    assert reference_counts(lines, wide, NOW) == {"accepted": 3}
    assert values(lines, wide, D0 + 7 * DAY) == {"n": 2}


def test_only_accepted_events_move_the_watermark() -> None:
    tree = count_tree()
    lines = [
        amp("a", "u", D0 + 10 * DAY, "A"),  # watermark D0+10d: late below D0-4d
        amp("a", "u", D0 + 15 * DAY, "A"),  # duplicate (5d apart): no watermark move
        amp("a", "u", NOW + HOUR + 1),  # rejected (future): no watermark move
        amp("a", "u", D0),  # not late against D0+10d (it would be against D0+15d)
    ]
    assert reference_counts(lines, tree, NOW) == {
        "accepted": 2,
        "duplicate": 1,
        "rejected:future_time": 1,
    }
    # the watermark is a maximum: an older accepted event does not lower it
    older = [
        amp("a", "u", D0 + 30 * DAY),
        amp("a", "u", D0 + 17 * DAY),
        amp("a", "u", D0 + 16 * DAY - 1),
    ]
    assert reference_counts(older, tree, NOW) == {"accepted": 2, "late": 1}


def test_future_skew_boundary() -> None:
    tree = count_tree()
    lines = [amp("a", "u", NOW + HOUR), amp("a", "u", NOW + HOUR + 1)]
    assert reference_counts(lines, tree, NOW) == {"accepted": 1, "rejected:future_time": 1}


# --------------------------------------------------------------------------- duplicates


def test_dedupe_horizon_boundary_and_most_recent_accepted() -> None:
    tree = count_tree(lateness="30d")
    lines = [
        amp("a", "u", D0 + DAY, "A"),  # accepted
        amp("a", "u", D0 + 8 * DAY, "A"),  # exactly 7d later: duplicate
        amp("a", "u", D0 + 8 * DAY + 1, "A"),  # 7d + 1ms after D0+1d: accepted
        amp("a", "u", D0 + DAY, "A"),  # vs D0+8d+1ms (most recent accepted): accepted
        amp("a", "u", D0 + 14 * DAY, "A"),  # vs D0+1d: 13d: accepted
        amp("a", "u", D0 + 14 * DAY, "A"),  # same line again: duplicate
        amp("a", "v", D0 + 7 * DAY, "A"),  # other content, same id, 7d away: duplicate
        amp("a", "u", D0 + 2 * DAY),  # no insert id: never a duplicate
        amp("a", "u", D0 + 2 * DAY),
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 6, "duplicate": 3}
    # window [D0, D0+7d): D0+1d twice (both accepted), D0+2d twice
    assert values(lines, tree, D0 + 7 * DAY) == {"n": 4}


def test_an_event_no_metric_reads_is_never_a_duplicate_nor_makes_one() -> None:
    """Insert ids only count among the events the tree's measures read: an
    event of another name is judged late or accepted (and then moves the
    watermark), but its id is neither checked nor recorded."""
    tree = count_tree()
    lines = [
        amp("b", "u", D0 + DAY, "A"),  # read by no metric: accepted, id not recorded
        amp("a", "u", D0 + DAY, "A"),  # same id: accepted (no "b" is ever a duplicate's original)
        amp("b", "u", D0 + DAY, "A"),  # a copy of the first line: accepted all the same
        amp("a", "u", D0 + DAY, "A"),  # a copy of the "a": duplicate
        amp("b", "u", D0 + 20 * DAY, "B"),  # moves the watermark to D0+20d
        amp("a", "u", D0 + 6 * DAY - 1),  # late against it
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 4, "duplicate": 1, "late": 1}
    assert values(lines, tree, D0 + 7 * DAY) == {"n": 1}


def test_custom_dedupe_horizon() -> None:
    tree = count_tree(dedupe_horizon="1h")
    lines = [
        amp("a", "u", D0, "A"),
        amp("a", "u", D0 + HOUR, "A"),  # exactly 1h: duplicate
        amp("a", "u", D0 + HOUR + 1, "A"),  # accepted
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 2, "duplicate": 1}


def test_insert_ids_are_remembered_until_they_cannot_matter() -> None:
    # H = 14d, dedupe 7d: an id may be forgotten once the watermark is more than
    # H + 7d = 21d past it. At exactly 21d it still matters.
    tree = count_tree()
    lines = [
        amp("a", "u", D0, "A"),
        amp("a", "u", D0 + 21 * DAY),  # watermark = D0 + H + dedupe
        amp("a", "u", D0 + 7 * DAY, "A"),  # not late (= watermark - H), 7d from D0: duplicate
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 2, "duplicate": 1}
    lines = [
        amp("a", "u", D0, "A"),
        amp("a", "u", D0 + 21 * DAY + 1),
        amp("a", "u", D0 + 7 * DAY + 1, "A"),  # 7d + 1ms from D0: accepted
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 3}


def test_late_is_decided_before_duplicate() -> None:
    tree = count_tree()
    lines = [
        amp("a", "u", D0, "A"),
        amp("a", "u", D0 + 30 * DAY, "B"),
        amp("a", "u", D0, "A"),  # a re-sent copy, but older than the horizon: late
    ]
    assert reference_counts(lines, tree, NOW) == {"accepted": 2, "late": 1}


# --------------------------------------------------------------------------- rejections


def test_rejections_are_counted_by_reason_and_change_nothing() -> None:
    tree = count_tree()
    lines = [
        b"not json",
        b"[1, 2]",
        amp(None, "u", D0),  # no event name
        amp("a", None, D0),  # no user
        amp("a", "u", None),  # no time
        amp("a", "u", "yesterday"),
        amp("a", "u", D0, pad="x" * 70_000),  # oversize (> 65536 bytes)
        amp("a", "u", D0 + HOUR),
    ]
    counts = reference_counts(lines, tree, NOW)
    assert counts["accepted"] == 1
    assert counts["rejected:not_json"] == 1
    assert counts["rejected:not_object"] == 1
    assert counts["rejected:no_event_name"] == 1
    assert counts["rejected:no_user"] == 1
    assert counts["rejected:no_time"] == 1
    assert counts["rejected:oversize"] == 1
    assert sum(counts.values()) == len(lines)
    assert values(lines, tree, D0 + 7 * DAY) == {"n": 1}


# --------------------------------------------------------------------------- shipped trees


def load(name: str) -> Tree:
    return Tree.model_validate(YAML(typ="safe").load((DEFINITIONS / f"{name}.yaml").read_text()))


def test_education_tree_end_to_end() -> None:
    tree = load("education")
    assert lateness_horizon(tree) == 21 * 86400
    t = D0 + DAY
    lines = [
        amp("signed_up", "u1", t),
        amp("lesson_completed", "u1", t + 10 * MIN, minutes=12),
        amp("lesson_completed", "u1", t + DAY, minutes=8),
        amp("lesson_completed", "u2", t + HOUR, minutes="5"),  # user counts, minutes don't
        amp("lesson_abandoned", "u2", t + 2 * HOUR, minutes=3),
        amp("subscription_purchased", "u1", t, plan="pro", amount_usd=10),
        amp("lesson_completed", "u3", D0 - DAY, minutes=30),  # previous week
        amp("lesson_completed", "u1", D0 - DAY, minutes=30),
    ]
    assert_values(
        values(lines, tree, D0 + 7 * DAY),
        {
            "weekly_learning_minutes": 20,
            "weekly_active_learners": 2,
            "minutes_per_learner": 10,
            "learning_days_per_learner": 1.5,  # (u1, d1) (u1, d2) (u2, d1) / 2
            "time_to_first_lesson_p50_seconds": 600,
            "weekly_learner_retention": 0.5,  # {u1, u3} -> u1
            "lesson_abandon_rate": 0.25,  # 1 / (1 + 3)
            "refund_rate": 0.0,
            "paid_conversions": 1,
        },
    )
    assert evaluate(tree, ingest(lines, tree, NOW).accepted, D0 + 40 * DAY) == {
        "weekly_learning_minutes": 0,
        "weekly_active_learners": 0,
        "minutes_per_learner": None,
        "learning_days_per_learner": None,
        "time_to_first_lesson_p50_seconds": None,
        "weekly_learner_retention": None,
        "lesson_abandon_rate": None,
        "refund_rate": None,
        "paid_conversions": 0,
    }


# --------------------------------------------------------------------------- lateness horizon


@pytest.mark.parametrize("path", sorted(DEFINITIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_horizon_of_every_shipped_tree_matches_the_spec_module(path: Path) -> None:
    tree = load(path.stem)
    assert horizon_s(tree) == lateness_horizon(tree)


def guardrail_tree(baseline: dict[str, Any], **fields: Any) -> Tree:
    doc = make_tree({"n": {"kind": "count", "event": "a"}}, **fields).model_dump(by_alias=True)
    doc["guardrails"] = [
        {
            "name": "g",
            "title": "g",
            "description": "g",
            "unit": "u",
            "window": "7d",
            "tolerance": 0.1,
            "baseline": baseline,
            "measure": {"kind": "retention", "event": "a"},
        }
    ]
    return Tree.model_validate(doc)


def test_horizon_by_hand() -> None:
    # retention guardrail: lookback 2w = 14d; trailing average of 3: 21d -> 35d
    assert horizon_s(guardrail_tree({"kind": "trailing_average", "periods": 3})) == 35 * 86400
    assert horizon_s(guardrail_tree({"kind": "previous_window"})) == 21 * 86400
    assert horizon_s(guardrail_tree({"kind": "previous_window"}, lateness="60d")) == 60 * 86400


def test_previous_window_baseline_ignores_periods_in_the_horizon() -> None:
    tree = guardrail_tree({"kind": "previous_window", "periods": 3})
    assert lateness_horizon(tree) == horizon_s(tree) == 21 * 86400
