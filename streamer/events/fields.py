"""Reading a definition's field reference (``user``, ``prop.X``, ``group.X``,
``user_prop.X``) out of a decoded event."""

from __future__ import annotations

from typing import Any

from streamer.events.types import Event

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
