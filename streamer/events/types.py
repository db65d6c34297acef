"""Value types of decoded events (no I/O, no parsing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, gc=False):
    """One product event, whatever shape it arrived in.

    ``time_ms`` is the event time (milliseconds since the Unix epoch, UTC), taken
    from the event itself, never from Kafka. ``insert_id`` is the producer's
    idempotency key (Amplitude ``insert_id``, Segment ``messageId``) or None.

    A frozen ``msgspec.Struct``: built in a fraction of a frozen dataclass's
    time (one is made per event), compared and printed alike. Not tracked by
    the garbage collector (``gc=False``): an Event holds parsed JSON, which
    can never refer back to it, so it cannot be part of a cycle.
    """

    name: str
    user: str
    time_ms: int
    insert_id: str | None = None
    props: Mapping[str, Any] = {}
    groups: Mapping[str, Any] = {}
    user_props: Mapping[str, Any] = {}


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
