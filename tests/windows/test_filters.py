"""Filter semantics (docs/semantics.md §2)."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.events.types import Event
from streamer.spec.model import EventFilter
from streamer.windows.filters import compile_filter, same


def _event(name: str = "x", **props: Any) -> Event:
    return Event(name=name, user="u", time_ms=0, props=props)


@pytest.mark.parametrize(
    ("where", "props", "expected"),
    [
        ({"plan": "pro"}, {"plan": "pro"}, True),
        ({"plan": "pro"}, {"plan": "free"}, False),
        ({"plan": "pro"}, {}, False),
        ({"flag": True}, {"flag": 1}, False),  # booleans are not numbers
        ({"n": 1}, {"n": 1.0}, True),
        ({"n": {"gt": 2}}, {"n": 3}, True),
        ({"n": {"gt": 2}}, {"n": "3"}, False),  # strings are not numbers
        ({"n": {"gte": 2, "lt": 5}}, {"n": 5}, False),
        ({"n": {"lte": 2}}, {"n": True}, False),
        ({"plan": {"in": ["pro", "team"]}}, {"plan": "team"}, True),
        ({"plan": {"not_in": ["pro"]}}, {}, True),  # missing holds for not_in
        ({"plan": {"ne": "pro"}}, {}, True),
        ({"plan": {"ne": "pro"}}, {"plan": "pro"}, False),
        ({"plan": {"exists": True}}, {"plan": None}, False),
        ({"plan": {"exists": False}}, {}, True),
    ],
)
def test_conditions(where: dict[str, Any], props: dict[str, Any], expected: bool) -> None:
    match = compile_filter(EventFilter.model_validate({"event": "x", "where": where}))
    assert match(_event(**props)) is expected


def test_event_names() -> None:
    match = compile_filter(EventFilter.model_validate({"event": ["a", "b"]}))
    assert match(_event("a")) and match(_event("b")) and not match(_event("c"))


def test_same_keeps_types_apart() -> None:
    assert same(1, 1.0) and not same(True, 1) and not same("1", 1) and same(False, False)
