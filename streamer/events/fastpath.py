"""The Amplitude fast path: a message's JSON straight into typed fields.

``orjson.loads`` builds every object of a message as a ``dict`` and
``shapes.amplitude`` then picks the fields out of it: ~3 us per event here,
more than everything a worker does with the event afterwards. msgspec decodes
into a typed struct instead: fields the shape does not read are skipped, the
types and ranges the shape would check are checked in C, about 1 us per event
(``python -m streamer.bench.decode``).

It takes only messages it reads exactly as ``orjson.loads`` +
``shapes.amplitude`` would, and returns None for any other, which the caller
then decodes the general way. So which path a message took never shows in
its Event (``tests/events/test_fastpath.py`` checks this on random
messages). What sends a message the general way:

- a field missing, empty, or of a type the shape would convert or reject
  (a numeric user id, a time in seconds or text, a ``null`` object ...);
- an integer outside int64 anywhere in the properties: orjson reads those
  as floats, msgspec exactly;
- properties nested deeper than ``DEPTH`` objects or arrays (their values
  are not type-checked below that);
- a time after ``max_ms``; anything that is not JSON, or not UTF-8.

One difference is left, on purpose: the fields the shape does not read are
checked for JSON syntax only, so a number there beyond the range of a double
(``1e400``), which orjson refuses, does not make the message ``not_json``
on this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, Union

import msgspec

from streamer.events.timeparse import MAX_MS
from streamer.events.types import Event

DEPTH: Final = 3
"""Objects and arrays nested within a property value that the fast path
takes (``{"a": [[{}]]}`` is 3 deep)."""

_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Scalar = Union[None, bool, _Int, float, str]  # noqa: UP007 (msgspec reads the runtime union)


def _value_type(depth: int) -> Any:
    """A JSON value with containers at most ``depth`` deep and int64 integers."""
    if depth == 0:
        return _Scalar
    inner = _value_type(depth - 1)
    return Union[None, bool, _Int, float, str, list[inner], dict[str, inner]]  # type: ignore[valid-type]  # noqa: UP007


if TYPE_CHECKING:
    _Value = Any
else:
    _Value = _value_type(DEPTH)
_Text = Annotated[str, msgspec.Meta(min_length=1)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_MS)]


class _Amplitude(msgspec.Struct, gc=False):
    """The fields ``shapes.amplitude`` reads, in the types it takes as they
    are (an empty ``insert_id`` would be None: the general path makes it so)."""

    event_type: _Text
    user_id: _Text
    time: _Time
    insert_id: _Text | None = None
    event_properties: dict[str, _Value] = {}
    user_properties: dict[str, _Value] = {}
    groups: dict[str, _Value] = {}


_ERRORS: Final = (msgspec.DecodeError, RecursionError)
"""msgspec's errors (``ValidationError`` is a ``DecodeError``); nesting
deeper than the interpreter's recursion limit raises ``RecursionError``."""


def _utf8(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-8 throughout: msgspec does not check the
    strings of fields it skips, orjson refuses the whole message."""
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


class AmplitudeFast:
    """``__call__(raw, max_ms)``: the Event of an Amplitude message (bytes),
    or None when the general path must decide. Thread-safe."""

    __slots__ = ("_decode",)

    def __init__(self) -> None:
        self._decode = msgspec.json.Decoder(_Amplitude).decode

    def __call__(self, raw: bytes, max_ms: int) -> Event | None:
        if not raw.isascii() and not _utf8(raw):
            return None
        try:
            a = self._decode(raw)
        except _ERRORS:
            return None
        if a.time > max_ms:
            return None
        return Event(a.event_type, a.user_id, a.time, a.insert_id, a.event_properties, a.groups, a.user_properties)

    def batch(
        self, raws: Sequence[bytes], max_ms: int, max_bytes: int
    ) -> tuple[list[Event | None], int]:
        """``[self(raw, max_ms) for raw in raws]`` (None also for a value that
        is not ``bytes`` or is longer than ``max_bytes``) and how many are
        None, with the lookups paid once per batch."""
        decode = self._decode
        out: list[Event | None] = []
        append = out.append
        missed = 0
        for raw in raws:
            if type(raw) is not bytes or len(raw) > max_bytes or not (raw.isascii() or _utf8(raw)):
                append(None)
                missed += 1
                continue
            try:
                a = decode(raw)
            except _ERRORS:
                append(None)
                missed += 1
                continue
            if a.time > max_ms:
                append(None)
                missed += 1
            else:
                append(Event(a.event_type, a.user_id, a.time, a.insert_id, a.event_properties, a.groups, a.user_properties))
        return out, missed
