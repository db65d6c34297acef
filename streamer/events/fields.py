"""Reading a definition's field reference (``user``, ``prop.X``, ``group.X``,
``user_prop.X``) out of a decoded event."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from streamer.events.types import Event

Reader = Callable[[Event], Any]
_SOURCES = {"prop": "props", "group": "groups", "user_prop": "user_props"}

_MISSING = object()


def field_value(event: Event, ref: str) -> Any:
    """The referenced value, or None when the event does not carry it.

    Dotted names after the prefix descend into nested objects
    (``prop.item.id`` reads ``props["item"]["id"]`` when ``props`` has no key
    ``"item.id"``)."""
    if ref == "user":
        return event.user
    prefix, _, name = ref.partition(".")
    source = {"prop": event.props, "group": event.groups, "user_prop": event.user_props}[prefix]
    if name in source:
        return source[name]
    value: Any = source
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def field_reader(ref: str) -> Reader:
    """``lambda event: field_value(event, ref)``, with ``ref`` parsed once:
    for the hot loops that read the same field of every event."""
    if ref == "user":
        return attrgetter("user")
    prefix, _, name = ref.partition(".")
    if "." not in name:
        source = attrgetter(_SOURCES[prefix])
        # a missing key and a key holding null both read as None
        return lambda event: source(event).get(name)
    return lambda event: field_value(event, ref)


def entity_key(value: Any) -> str | None:
    """A value as an entity/item/group key: strings as they are, integers in
    decimal, anything else (missing, empty, float, bool, object) is None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    return None
