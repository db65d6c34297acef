"""Value types of decoded events (no I/O, no parsing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Union

import msgspec

from streamer.events.timeparse import MAX_MS

DEPTH: Final = 3
"""Objects and arrays nested within a property value that the fast path
(streamer/events/fastpath.py) takes (``{"a": [[{}]]}`` is 3 deep)."""

_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Scalar = Union[None, bool, _Int, float, str]  # noqa: UP007 (msgspec reads the runtime union)


def _value_type(depth: int) -> Any:
    """A JSON value with containers at most ``depth`` deep and int64 integers."""
    if depth == 0:
        return _Scalar
    inner = _value_type(depth - 1)
    return Union[None, bool, _Int, float, str, list[inner], dict[str, inner]]  # type: ignore[valid-type]  # noqa: UP007


if TYPE_CHECKING:
    _Props = Mapping[str, Any]
else:
    _Props = dict[str, _value_type(DEPTH)]
_Text = Annotated[str, msgspec.Meta(min_length=1)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=MAX_MS)]


class Event(
    msgspec.Struct,
    frozen=True,
    gc=False,
    rename={"name": "event_type", "user": "user_id", "time_ms": "time",
            "props": "event_properties", "user_props": "user_properties"},
):
    """One product event, whatever shape it arrived in.

    ``time_ms`` is the event time (milliseconds since the Unix epoch, UTC), taken
    from the event itself, never from Kafka. ``insert_id`` is the producer's
    idempotency key (Amplitude ``insert_id``, Segment ``messageId``) or None.

    A frozen ``msgspec.Struct``: built in a fraction of a frozen dataclass's
    time (one is made per event), compared and printed alike. Not tracked by
    the garbage collector (``gc=False``): an Event holds parsed JSON, which
    can never refer back to it, so it cannot be part of a cycle.

    It is also what the Amplitude fast path decodes a message into, with no
    struct in between (``msgspec.json.Decoder(Event)``): the ``rename`` maps
    the fields to Amplitude's names, and the annotations carry the checks the
    general path makes (non-empty strings, a time within range, int64
    integers, properties at most ``DEPTH`` deep). They are checked when
    decoding only; the general path builds Events from values it checked.
    """

    name: _Text
    user: _Text
    time_ms: _Time
    insert_id: _Text | None = None
    props: _Props = {}
    groups: _Props = {}
    user_props: _Props = {}


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an input could not become an Event. ``reason`` is one of REASONS
    (a bounded set, safe as a Prometheus label); ``detail`` is for humans."""

    reason: str
    detail: str


REASONS = (
    "not_json",
    "not_object",
    "oversize",
    "no_event_name",
    "no_user",
    "no_time",
    "bad_time",
    "future_time",
    "bad_field",
    "unsupported_type",
)
