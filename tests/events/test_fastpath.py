"""The Amplitude fast path (streamer/events/fastpath.py) gives what the
general path (orjson + shapes.amplitude) gives, or stands aside."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.events.decode import Decoder
from streamer.events.fastpath import DEPTH, AmplitudeFast
from streamer.events.types import Event, Rejected
from streamer.spec.model import Source

NOW = 1_717_200_000_000
AMPLITUDE = Decoder(Source(shape="amplitude"))
MAX_MS = NOW + AMPLITUDE.source.future_skew * 1000
FAST = AmplitudeFast()


def general(raw: bytes, decoder: Decoder = AMPLITUDE) -> Event | Rejected:
    """What the general path makes of ``raw``: orjson, then the shape."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejected("not_json", "")
    return decoder.decode_obj(obj, len(raw), NOW)


def same(a: Event | Rejected, b: Event | Rejected) -> bool:
    """Equal Events (with the same types of values throughout: 1 == 1.0 in
    Python, not in a breakdown label), or rejections for the same reason."""
    if isinstance(a, Rejected) or isinstance(b, Rejected):
        return isinstance(a, Rejected) and isinstance(b, Rejected) and a.reason == b.reason
    return a == b and orjson.dumps(a.props) == orjson.dumps(b.props) and orjson.dumps(a.user_props) == orjson.dumps(
        b.user_props
    ) and orjson.dumps(a.groups) == orjson.dumps(b.groups)


def event(**fields: Any) -> bytes:
    base: dict[str, Any] = {"event_type": "lesson_completed", "user_id": "u1", "time": NOW - 5}
    return json.dumps({**base, **fields}).encode()


def test_well_formed_messages_take_the_fast_path() -> None:
    raws = [
        event(),
        event(insert_id="abc", event_properties={"minutes": 12.5, "plan": "pro", "n": 3, "ok": True, "x": None}),
        event(user_properties={"country": "DE"}, groups={"org": ["a", "b"]}, device_id="d", platform="ios"),
        event(event_properties={"item": {"id": 7, "tags": [1, {"k": -(2**63)}]}}),
        event(event_properties={"city": "Zürich \u2603 \U0001f600"}, insert_id=None),
    ]
    for raw in raws:
        fast = FAST(raw, MAX_MS)
        assert fast is not None, raw
        assert same(fast, general(raw))
        assert AMPLITUDE.decode(raw, NOW) == fast
    events, missed = FAST.batch(raws, MAX_MS, AMPLITUDE.source.max_event_bytes)
    assert missed == 0 and events == [FAST(raw, MAX_MS) for raw in raws]


nested = {"k": 1}
for _ in range(DEPTH):
    nested = {"k": nested}  # one level more than the fast path takes


@pytest.mark.parametrize(
    "raw",
    [
        event(event_properties={"big": 2**63}),  # orjson: an int; the fast path only takes int64
        event(event_properties={"big": 2**64}),  # orjson: a float
        event(event_properties={"big": -(2**63) - 1}),
        event(event_properties={"deep": [1, [2, [3, {"big": 10**30}]]]}),
        event(event_properties={"deep": nested}),
        event(user_properties={"big": 10**400}),  # orjson: not JSON (infinite)
        event(groups={"org": 10**25}),
        event(user_id=12345),  # numeric ids are read in decimal
        event(user_id=""),
        event(user_id=None, device_id="d-1"),
        event(event_type=""),
        event(time=str(NOW)),
        event(time=float(NOW - 5)),
        event(time=True),
        event(time=-1),
        event(time=MAX_MS + 1),  # after the processing clock + future_skew
        event(insert_id=""),
        event(insert_id=42),
        event(event_properties=None),
        event(event_properties=[1]),
        b'{"event_type":"a","user_id":"u","time":5,"time":"x"}',  # duplicate keys: the last wins
        b'{"event_type":"a","user_id":5,"user_id":"u","time":5}',
        b'{"event_type":"a","user_id":"u","time":5,"device_id":"\xff"}',  # not UTF-8 in a field not read
        b'{"event_type":"a","user_id":"u","time":5,"p":"\\udc00"}',  # lone surrogate
        b'{"event_type":"a","user_id":"u","time":5,"p":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'\xef\xbb\xbf{"event_type":"a","user_id":"u","time":5}',
        b'{"event_type":"a","user_id":"u","time":5,}',
        b'["event_type"]',
        b"",
    ],
)
def test_messages_the_general_path_reads_otherwise(raw: bytes) -> None:
    assert FAST(raw, MAX_MS) is None
    decoded = AMPLITUDE.decode(raw, NOW)
    assert same(decoded, general(raw))
    assert AMPLITUDE.decode_batch([event(), raw, event()], NOW)[1] == decoded


def test_out_of_range_numbers_in_fields_not_read_are_not_checked() -> None:
    """The one difference, documented in fastpath.py: orjson refuses a
    number beyond a double anywhere; the fast path skips fields it does not
    read after checking their syntax only."""
    raw = b'{"event_type":"a","user_id":"u","time":5,"session":1e400}'
    assert isinstance(general(raw), Rejected)
    assert AMPLITUDE.decode(raw, NOW) == Event("a", "u", 5)


# Any JSON value, with integers of any size (Python's json writes them; orjson
# cannot), as property values and as the fields the shape reads.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**63 + 3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=6), values, max_size=4)


def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid`` (so that most messages are the fast path's), else any value."""
    return st.sampled_from(range(8)).flatmap(lambda i: values if i == 0 else valid)


messages = st.fixed_dictionaries(
    {
        "event_type": either(st.text(min_size=1, max_size=6)),
        "user_id": either(st.text(min_size=1, max_size=6)),
        "time": either(st.integers(min_value=0, max_value=MAX_MS + 10)),
    },
    optional={
        "insert_id": either(st.text(min_size=1, max_size=6)),
        "event_properties": either(objects),
        "user_properties": either(objects),
        "groups": either(objects),
        "device_id": values,
        "session": values,
    },
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.booleans())
def test_random_messages_decode_as_the_general_path_does(obj: dict[str, Any], ascii_only: bool) -> None:
    raw = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    decoded = AMPLITUDE.decode(raw, NOW)
    assert same(decoded, general(raw)), (raw, decoded, general(raw))
    fast = FAST(raw, MAX_MS)
    assert fast is None or fast == decoded
