"""The Amplitude fast path: a message's JSON straight into typed fields.

``orjson.loads`` builds every object of a message as a ``dict`` and
``shapes.amplitude`` then picks the fields out of it: ~3 us per event here,
more than everything a worker does with the event afterwards. msgspec decodes
straight into the ``Event`` instead (its annotations and ``rename`` are the
Amplitude fields, ``streamer/events/types.py``): fields the shape does not
read are skipped, the types and ranges the shape would check are checked in
C, about 1 us per event (``python -m streamer.bench.decode``), and no struct
is made in between.

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
from typing import Final

import msgspec

from streamer.events.types import DEPTH, Event

__all__ = ["DEPTH", "AmplitudeFast"]


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
        self._decode = msgspec.json.Decoder(Event).decode

    def __call__(self, raw: bytes, max_ms: int) -> Event | None:
        if not raw.isascii() and not _utf8(raw):
            return None
        try:
            event = self._decode(raw)
        except _ERRORS:
            return None
        return None if event.time_ms > max_ms else event

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
                event = decode(raw)
            except _ERRORS:
                append(None)
                missed += 1
                continue
            if event.time_ms > max_ms:
                append(None)
                missed += 1
            else:
                append(event)
        return out, missed
