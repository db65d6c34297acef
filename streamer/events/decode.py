"""Turning raw Kafka message values into Events (or Rejections).

This runs for every event, so the common path does the least possible work.
An Amplitude message first tries the fast path (``streamer.events.fastpath``:
msgspec decodes it straight into the typed fields, ~1 us); any message it
does not take, and every message of the other shapes, goes the general way:
one size check, one ``orjson.loads``, one type check, then the source's shape
(``streamer.events.shapes``) reads the fields straight out of the parsed
objects without copying them. Nothing here raises for any input; the clock is
passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from streamer.events.fastpath import AmplitudeFast
from streamer.events.shapes import Shape, describe, shape_for
from streamer.events.types import Event, Rejected
from streamer.spec.model import Source

_JSON_KINDS: Final[dict[type, str]] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _size(raw: object) -> int | None:
    """UTF-8 size in bytes of an input orjson can read, else None."""
    if isinstance(raw, bytes | bytearray):
        return len(raw)
    if isinstance(raw, str):
        if raw.isascii():
            return len(raw)
        # Lone surrogates cannot be UTF-8; count them as 3 bytes each, and let
        # orjson reject them as not JSON.
        return len(raw.encode("utf-8", "surrogatepass"))
    if isinstance(raw, memoryview):
        return raw.nbytes
    return None


def _not_json(error: orjson.JSONDecodeError) -> Rejected:
    return Rejected("not_json", str(error)[:200])


def _not_object(obj: object) -> Rejected:
    kind = _JSON_KINDS.get(type(obj)) or describe(obj)
    return Rejected("not_object", f"the event is {kind}, not a JSON object")


class Decoder:
    """Decodes one source's events. Construct once per source, reuse for every
    message; ``decode`` is safe to call from several threads."""

    __slots__ = ("_fast", "_max_bytes", "_shape", "_skew_ms", "source")

    def __init__(self, source: Source) -> None:
        self.source = source
        self._shape: Shape = shape_for(source)
        self._fast = AmplitudeFast() if source.shape == "amplitude" else None
        self._max_bytes = source.max_event_bytes
        self._skew_ms = source.future_skew * 1000

    def decode(self, raw: bytes | str, now_ms: int) -> Event | Rejected:
        """The event in ``raw`` (a Kafka message value), or why it is rejected.

        ``now_ms`` is the processing clock: events more than ``future_skew``
        after it are ``future_time``. Inputs larger than ``max_event_bytes``
        are rejected before parsing. Never raises."""
        if self._fast is not None and type(raw) is bytes and len(raw) <= self._max_bytes:
            event = self._fast(raw, now_ms + self._skew_ms)
            if event is not None:
                return event
        return self._general(raw, now_ms)

    def _general(self, raw: bytes | str, now_ms: int) -> Event | Rejected:
        """``decode`` without the fast path."""
        size = len(raw) if type(raw) is bytes else _size(raw)
        if size is None:
            return Rejected("not_json", f"the event is {describe(raw)}, not bytes or str")
        if size > self._max_bytes:
            return Rejected(
                "oversize", f"{size} bytes, more than max_event_bytes {self._max_bytes}"
            )
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as error:  # also raised for invalid UTF-8
            return _not_json(error)
        if type(obj) is not dict:
            return _not_object(obj)
        return self._shape(obj, now_ms + self._skew_ms)

    def decode_obj(self, obj: object, raw_size: int, now_ms: int) -> Event | Rejected:
        """As ``decode``, for a message whose JSON is already parsed;
        ``raw_size`` is the size in bytes of the message it came from."""
        if raw_size > self._max_bytes:
            return Rejected(
                "oversize", f"{raw_size} bytes, more than max_event_bytes {self._max_bytes}"
            )
        if not isinstance(obj, dict):
            return _not_object(obj)
        return self._shape(obj, now_ms + self._skew_ms)

    def decode_batch(self, raws: Sequence[bytes], now_ms: int) -> list[Event | Rejected]:
        """``[decode(raw, now_ms) for raw in raws]``, with the attribute
        lookups and the method call paid once per batch instead of per event."""
        if self._fast is not None:
            fast, missed = self._fast.batch(raws, now_ms + self._skew_ms, self._max_bytes)
            if not missed:
                return fast  # type: ignore[return-value]  # no None in it
            general = self._general
            return [
                event if event is not None else general(raw, now_ms)
                for raw, event in zip(raws, fast, strict=True)
            ]
        shape = self._shape
        max_bytes = self._max_bytes
        max_ms = now_ms + self._skew_ms
        loads = orjson.loads
        decode = self._general
        out: list[Event | Rejected] = []
        append = out.append
        for raw in raws:
            if type(raw) is not bytes or len(raw) > max_bytes:
                append(decode(raw, now_ms))
                continue
            try:
                obj: Any = loads(raw)
            except orjson.JSONDecodeError as error:
                append(_not_json(error))
                continue
            append(shape(obj, max_ms) if type(obj) is dict else _not_object(obj))
        return out
