"""Field references: a compiled reader reads what ``field_value`` reads."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streamer.events.fields import field_reader, field_value
from streamer.events.types import Event

names = st.sampled_from(["a", "b", "a.b", "b.c"])
values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda children: st.dictionaries(names, children, max_size=3),
    max_leaves=6,
)
objects = st.dictionaries(names, values, max_size=4)
refs = st.sampled_from(["user"]) | st.tuples(
    st.sampled_from(["prop", "group", "user_prop"]), st.sampled_from(["a", "b", "a.b", "a.b.c", "missing"])
).map(".".join)


@given(objects, objects, objects, refs)
def test_a_reader_reads_what_field_value_reads(props: Any, groups: Any, user_props: Any, ref: str) -> None:
    event = Event("e", "u1", 5, None, props, groups, user_props)
    assert field_reader(ref)(event) == field_value(event, ref)
