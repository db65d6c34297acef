"""Event shapes: where the name, user, time, insert id, properties and groups
sit in an Amplitude, Segment or generic JSON object (see docs/events.md).

A shape is a function ``(obj, max_ms) -> Event | Rejected`` over an already
parsed JSON object; ``max_ms`` is the latest acceptable event time (processing
clock + ``future_skew``). Shapes never raise and never copy: the Event refers
to the parsed ``dict`` objects.

Conventions shared by every shape:

- ``null`` is the same as a missing field.
- Event name: a non-empty string, else ``no_event_name``.
- User (and insert id): a non-empty string as it is, an integer in decimal;
  anything else counts as missing (as ``fields.entity_key`` reads keys).
- Properties, user properties and groups: an object, or missing/``null`` (an
  empty ``dict``); anything else is ``bad_field``.
- Insert id: a string or an integer; ``""`` is missing; any other type is
  ``bad_field`` (an idempotency key we cannot read is not silently dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from streamer.events import timeparse
from streamer.events.timeparse import MAX_MS
from streamer.events.types import Event, Rejected
from streamer.spec.model import GenericMapping, Source

Shape = Callable[[dict[str, Any], int], Event | Rejected]

# --------------------------------------------------------------------------- field readers


def describe(value: object) -> str:
    """A short, bounded rendering of a JSON value for rejection details."""
    if isinstance(value, str):
        text = repr(value[:40])  # escapes can make it up to 10x longer
        return text if len(value) <= 40 and len(text) <= 60 else text[:60] + "..."
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        bits = value.bit_length()
        return repr(value) if bits <= 64 else f"an integer of {bits} bits"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _key(value: object) -> str | None:
    """A user id: a non-empty string, or an integer in decimal; else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than int -> str allows (not from JSON)
            return None
    return None


def _no_name(field: str, value: object) -> Rejected:
    if value is None:
        return Rejected("no_event_name", f"no {field}")
    return Rejected("no_event_name", f"{field} {describe(value)} is not a non-empty string")


def _time(field: str, value: object, read: Callable[[object], int | str]) -> int | Rejected:
    if value is None:
        return Rejected("no_time", f"no {field}")
    ms = read(value)
    if isinstance(ms, str):
        return Rejected("bad_time", f"{field} {describe(value)} {ms}")
    return ms


def _future(field: str, ms: int, max_ms: int) -> Rejected:
    return Rejected(
        "future_time",
        f"{field} {timeparse.format_ms(ms)} is after {timeparse.format_ms(max_ms)}"
        " (processing clock + future_skew)",
    )


def _insert_id(field: str, value: object) -> str | Rejected | None:
    """The slow path for insert ids that are not non-empty strings."""
    if value is None or value == "":
        return None
    key = _key(value)
    if key is None:
        return Rejected("bad_field", f"{field} {describe(value)} is not a string")
    return key


def _object(field: str, value: object) -> dict[str, Any] | Rejected:
    """The slow path for objects that are not exactly ``dict``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return Rejected("bad_field", f"{field} {describe(value)} is not an object")


# --------------------------------------------------------------------------- shapes


def amplitude(obj: dict[str, Any], max_ms: int) -> Event | Rejected:
    """Amplitude HTTP API v2 event: ``event_type``, ``user_id`` (else
    ``device_id``), ``time`` (ms), ``insert_id``, ``event_properties``,
    ``user_properties``, ``groups``."""
    # The common case (every field present and well typed) runs straight
    # through with one type test per field; anything else takes a helper.
    get = obj.get
    name = get("event_type")
    if type(name) is not str or not name:
        return _no_name("event_type", name)
    user = get("user_id")
    if type(user) is not str or not user:
        user = _key(user) or _key(get("device_id"))
        if user is None:
            return Rejected(
                "no_user", "neither user_id nor device_id is a non-empty string or integer"
            )
    time_ms = get("time")
    if type(time_ms) is not int or not 0 <= time_ms <= MAX_MS:
        time_ms = _time("time", time_ms, timeparse.millis)
        if isinstance(time_ms, Rejected):
            return time_ms
    if time_ms > max_ms:
        return _future("time", time_ms, max_ms)
    insert_id = get("insert_id")
    if type(insert_id) is not str or not insert_id:
        insert_id = _insert_id("insert_id", insert_id)
        if isinstance(insert_id, Rejected):
            return insert_id
    props = get("event_properties")
    if type(props) is not dict:
        props = _object("event_properties", props)
        if isinstance(props, Rejected):
            return props
    user_props = get("user_properties")
    if type(user_props) is not dict:
        user_props = _object("user_properties", user_props)
        if isinstance(user_props, Rejected):
            return user_props
    groups = get("groups")
    if type(groups) is not dict:
        groups = _object("groups", groups)
        if isinstance(groups, Rejected):
            return groups
    return Event(name, user, time_ms, insert_id, props, groups, user_props)


def segment(obj: dict[str, Any], max_ms: int) -> Event | Rejected:
    """Segment track call: ``event``, ``userId`` (else ``anonymousId``),
    ``timestamp`` (ISO 8601), ``messageId``, ``properties``,
    ``context.traits`` (user properties), ``context.groupId`` (groups as
    ``{"groupId": value}``). Other call types (identify, page, ...) are
    ``unsupported_type``."""
    get = obj.get
    kind = get("type")
    if kind is not None and (type(kind) is not str or kind != "track"):
        return Rejected(
            "unsupported_type", f"a Segment call of type {describe(kind)} is not a track call"
        )
    name = get("event")
    if type(name) is not str or not name:
        return _no_name("event", name)
    user = _key(get("userId")) or _key(get("anonymousId"))
    if user is None:
        return Rejected(
            "no_user", "neither userId nor anonymousId is a non-empty string or integer"
        )
    time_ms = _time("timestamp", get("timestamp"), timeparse.iso8601)
    if isinstance(time_ms, Rejected):
        return time_ms
    if time_ms > max_ms:
        return _future("timestamp", time_ms, max_ms)
    insert_id = get("messageId")
    if type(insert_id) is not str or not insert_id:
        insert_id = _insert_id("messageId", insert_id)
        if isinstance(insert_id, Rejected):
            return insert_id
    props = _object("properties", get("properties"))
    if isinstance(props, Rejected):
        return props
    context = _object("context", get("context"))
    if isinstance(context, Rejected):
        return context
    user_props = _object("context.traits", context.get("traits"))
    if isinstance(user_props, Rejected):
        return user_props
    group_id = context.get("groupId")
    groups: dict[str, Any] = {} if group_id is None else {"groupId": group_id}
    return Event(name, user, time_ms, insert_id, props, groups, user_props)


_TIME_READERS: Final[dict[str, Callable[[object], int | str]]] = {
    "ms": timeparse.millis,
    "s": timeparse.seconds,
    "iso8601": timeparse.iso8601,
}


class _Path:
    """A dotted path into a JSON object. A key that itself contains the dots
    wins over descending (``{"a.b": 1}`` before ``{"a": {"b": 1}}``), as in
    ``fields.field_value``."""

    __slots__ = ("label", "parts", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.parts = tuple(path.split("."))
        # Rejection details name the path; keep them short whatever the config.
        self.label = path if len(path) <= 40 else path[:37] + "..."

    def read(self, obj: dict[str, Any]) -> Any:
        value: Any = obj.get(self.path)
        if value is not None or len(self.parts) == 1:
            return value
        value = obj
        for part in self.parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value


class GenericShape:
    """A custom JSON event read through ``source.mapping`` (dotted paths)."""

    __slots__ = (
        "_event",
        "_groups",
        "_insert_id",
        "_props",
        "_read_time",
        "_time",
        "_user",
        "_user_props",
    )

    def __init__(self, mapping: GenericMapping) -> None:
        self._event = _Path(mapping.event)
        self._user = _Path(mapping.user)
        self._time = _Path(mapping.time)
        self._read_time = _TIME_READERS[mapping.time_format]
        self._insert_id = None if mapping.insert_id is None else _Path(mapping.insert_id)
        self._props = None if mapping.properties is None else _Path(mapping.properties)
        self._groups = None if mapping.groups is None else _Path(mapping.groups)
        self._user_props = (
            None if mapping.user_properties is None else _Path(mapping.user_properties)
        )

    def __call__(self, obj: dict[str, Any], max_ms: int) -> Event | Rejected:
        name = self._event.read(obj)
        if type(name) is not str or not name:
            return _no_name(self._event.label, name)
        user = _key(self._user.read(obj))
        if user is None:
            return Rejected("no_user", f"{self._user.label} is not a non-empty string or integer")
        time_ms = _time(self._time.label, self._time.read(obj), self._read_time)
        if isinstance(time_ms, Rejected):
            return time_ms
        if time_ms > max_ms:
            return _future(self._time.label, time_ms, max_ms)
        insert_id: str | None = None
        if self._insert_id is not None:
            read = _insert_id(self._insert_id.label, self._insert_id.read(obj))
            if isinstance(read, Rejected):
                return read
            insert_id = read
        objects: list[dict[str, Any]] = []
        for path in (self._props, self._groups, self._user_props):
            value = {} if path is None else _object(path.label, path.read(obj))
            if isinstance(value, Rejected):
                return value
            objects.append(value)
        props, groups, user_props = objects
        return Event(name, user, time_ms, insert_id, props, groups, user_props)


def shape_for(source: Source) -> Shape:
    """The shape function for a source (``source.shape``, ``source.mapping``)."""
    if source.shape == "amplitude":
        return amplitude
    if source.shape == "segment":
        return segment
    if source.mapping is None:  # Source validation forbids this; keep mypy honest.
        raise ValueError("a generic source needs a mapping")
    return GenericShape(source.mapping)
