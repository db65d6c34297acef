"""Decoder properties: never raises, bounded reasons, round trips per shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamer.events import timeparse
from streamer.events.decode import Decoder
from streamer.events.types import REASONS, Event, Rejected
from streamer.spec.model import GenericMapping, Source

NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z
SKEW_MS = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

GENERIC = {
    "ms": GenericMapping(
        event="e.name",
        user="e.who",
        time="at",
        time_format="ms",
        insert_id="id",
        properties="p",
        groups="g",
        user_properties="u.traits",
    ),
    "s": GenericMapping(event="name", user="user", time="ts", time_format="s", properties="props"),
    "iso8601": GenericMapping(event="name", user="user", time="ts", time_format="iso8601"),
}
SHAPED = {
    "amplitude": Decoder(Source(shape="amplitude")),
    "segment": Decoder(Source(shape="segment")),
    **{
        f"generic {name}": Decoder(Source(shape="generic", mapping=mapping))
        for name, mapping in GENERIC.items()
    },
    "amplitude, small": Decoder(Source(shape="amplitude", max_event_bytes=256, future_skew=1)),
}
DECODERS = list(SHAPED.values())

# JSON as orjson reads and writes it: 64-bit integers, finite floats.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# What a caller of decode_obj might hold: also NaN, infinities, big integers.
python_scalars = json_scalars | st.floats() | st.integers()

# Events of each shape whose every field is either well formed or any JSON
# value: they get past the JSON checks into every branch of the shapes.
names = st.text(min_size=1, max_size=12)
objects_or_any = st.dictionaries(st.text(max_size=6), json_scalars, max_size=3) | json_values


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, json_values)


def fields(**strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the given fields, each well formed or any JSON value; the
    first three are always there, the others may be missing."""
    return st.fixed_dictionaries(
        {key: mostly(strategy) for key, strategy in list(strategies.items())[:3]},
        optional={key: mostly(strategy) for key, strategy in list(strategies.items())[3:]},
    )


times_ms = st.integers(min_value=0, max_value=NOW + 2 * SKEW_MS)
MOSTLY_VALID = {
    "amplitude": fields(
        event_type=names,
        user_id=names | st.integers(min_value=-(2**63), max_value=2**64 - 1),
        time=times_ms | times_ms.map(str) | st.floats(0, NOW),
        device_id=names,
        insert_id=names,
        event_properties=objects_or_any,
        user_properties=objects_or_any,
        groups=objects_or_any,
    ),
    "segment": fields(
        event=names,
        userId=names,
        timestamp=times_ms.map(timeparse.format_ms),
        type=st.sampled_from(["track", "identify", "page"]),
        anonymousId=names,
        messageId=names,
        properties=objects_or_any,
        context=fields(traits=objects_or_any, groupId=json_values),
    ),
    "generic ms": fields(
        e=fields(name=names, who=names),
        at=times_ms,
        id=names,
        p=objects_or_any,
        g=objects_or_any,
        u=st.fixed_dictionaries({"traits": objects_or_any}),
    ),
    "generic s": fields(
        name=names,
        user=names,
        ts=times_ms.map(lambda t: t / 1000)
        | times_ms.map(lambda t: t // 1000)
        | st.floats(0, NOW / 1000),
        props=objects_or_any,
    ),
    "generic iso8601": fields(name=names, user=names, ts=times_ms.map(timeparse.format_ms)),
}
MOSTLY_VALID["amplitude, small"] = MOSTLY_VALID["amplitude"]


FIELDS = [
    "event_type", "user_id", "device_id", "time", "insert_id", "event_properties",
    "user_properties", "groups", "type", "event", "userId", "anonymousId", "timestamp",
    "messageId", "properties", "context", "e", "at", "id", "p", "g", "u", "name", "user", "ts",
]  # fmt: skip


def check_result(result: object, decoder: Decoder) -> None:
    assert isinstance(result, Event | Rejected)
    if isinstance(result, Rejected):
        assert result.reason in REASONS
        assert isinstance(result.detail, str) and len(result.detail) <= 200
        return
    assert isinstance(result.name, str) and result.name
    assert isinstance(result.user, str) and result.user
    assert type(result.time_ms) is int
    assert 0 <= result.time_ms <= NOW + decoder.source.future_skew * 1000
    assert result.insert_id is None or (isinstance(result.insert_id, str) and result.insert_id)
    for mapping in (result.props, result.groups, result.user_props):
        assert isinstance(mapping, dict)


@settings(max_examples=300)
@given(st.binary(max_size=400))
@example(b"\xff\xfe")
@example(b'{"event_type": "a", "user_id": "u", "time": 1}')
def test_any_bytes(raw: bytes) -> None:
    for decoder in DECODERS:
        check_result(decoder.decode(raw, NOW), decoder)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text(raw: str) -> None:
    for decoder in DECODERS:
        check_result(decoder.decode(raw, NOW), decoder)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value(value: Any) -> None:
    raw = orjson.dumps(value)
    for decoder in DECODERS:
        result = decoder.decode(raw, NOW)
        check_result(result, decoder)
        if len(raw) <= decoder.source.max_event_bytes:
            assert decoder.decode_obj(orjson.loads(raw), len(raw), NOW) == result


@pytest.mark.parametrize("shape", list(SHAPED))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mostly_valid_events(shape: str, data: st.DataObject) -> None:
    decoder = SHAPED[shape]
    obj = data.draw(MOSTLY_VALID[shape])
    raw = orjson.dumps(obj)
    result = decoder.decode(raw, NOW)
    check_result(result, decoder)
    assert decoder.decode_batch([raw], NOW) == [result]
    if len(raw) <= decoder.source.max_event_bytes:
        assert decoder.decode_obj(obj, len(raw), NOW) == result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), python_scalars | json_values, max_size=10))
def test_decode_obj_with_any_python_values(obj: dict[str, Any]) -> None:
    for decoder in DECODERS:
        check_result(decoder.decode_obj(obj, 10, NOW), decoder)


# --------------------------------------------------------------------------- round trips

keys = st.text(min_size=1, max_size=12)
small_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
objects = st.dictionaries(st.text(max_size=8), small_json, max_size=3)


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(
        name=draw(keys),
        user=draw(keys),
        time_ms=draw(st.integers(min_value=0, max_value=NOW + SKEW_MS)),
        insert_id=draw(st.none() | keys),
        props=draw(objects),
        groups=draw(objects),
        user_props=draw(objects),
    )


@given(events())
def test_amplitude_round_trip(event: Event) -> None:
    raw = orjson.dumps(
        {
            "event_type": event.name,
            "user_id": event.user,
            "device_id": "ignored",
            "time": event.time_ms,
            "insert_id": event.insert_id,
            "event_properties": event.props,
            "user_properties": event.user_props,
            "groups": event.groups,
        }
    )
    assert Decoder(Source()).decode(raw, NOW) == event


def local_iso(ms: int, offset_minutes: int, fraction: bool) -> str:
    """``ms`` as local time at a UTC offset, as Segment libraries may write it."""
    local = (EPOCH + timedelta(milliseconds=ms)).astimezone(
        timezone(timedelta(minutes=offset_minutes))
    )
    return local.isoformat(timespec="milliseconds" if fraction else "seconds")


@given(
    events(),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.booleans(),
    st.none() | keys | st.integers(min_value=0, max_value=2**63),
)
def test_segment_round_trip(
    event: Event, offset_minutes: int, fraction: bool, group_id: Any
) -> None:
    time_ms = event.time_ms if fraction else event.time_ms - event.time_ms % 1000
    raw = orjson.dumps(
        {
            "type": "track",
            "event": event.name,
            "userId": event.user,
            "anonymousId": "ignored",
            "timestamp": local_iso(time_ms, offset_minutes, fraction),
            "messageId": event.insert_id,
            "properties": event.props,
            "context": {"traits": event.user_props, "groupId": group_id},
        }
    )
    groups = {} if group_id is None else {"groupId": group_id}
    expected = Event(
        event.name, event.user, time_ms, event.insert_id, event.props, groups, event.user_props
    )
    assert Decoder(Source(shape="segment")).decode(raw, NOW) == expected


@given(events())
def test_generic_ms_round_trip(event: Event) -> None:
    raw = orjson.dumps(
        {
            "e": {"name": event.name, "who": event.user},
            "at": event.time_ms,
            "id": event.insert_id,
            "p": event.props,
            "g": event.groups,
            "u": {"traits": event.user_props},
        }
    )
    decoder = Decoder(Source(shape="generic", mapping=GENERIC["ms"]))
    assert decoder.decode(raw, NOW) == event


@given(events(), st.sampled_from(["int", "float", "string"]))
def test_generic_seconds_round_trip(event: Event, spelling: str) -> None:
    seconds, millis = divmod(event.time_ms, 1000)
    time_ms = seconds * 1000 if spelling == "int" else event.time_ms
    ts: object = {
        "int": seconds,
        "float": event.time_ms / 1000,
        "string": f"{seconds}.{millis:03d}",
    }[spelling]
    raw = orjson.dumps({"name": event.name, "user": event.user, "ts": ts, "props": event.props})
    decoder = Decoder(Source(shape="generic", mapping=GENERIC["s"]))
    assert decoder.decode(raw, NOW) == Event(event.name, event.user, time_ms, props=event.props)


@given(events())
def test_generic_iso8601_round_trip(event: Event) -> None:
    raw = orjson.dumps(
        {"name": event.name, "user": event.user, "ts": timeparse.format_ms(event.time_ms)}
    )
    decoder = Decoder(Source(shape="generic", mapping=GENERIC["iso8601"]))
    assert decoder.decode(raw, NOW) == Event(event.name, event.user, event.time_ms)


# --------------------------------------------------------------------------- time parsing


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
        ),
    ),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
def test_iso8601_matches_datetime(moment: datetime, timespec: str) -> None:
    kept = {"seconds": 0, "milliseconds": moment.microsecond // 1000 * 1000}
    written = moment.replace(microsecond=kept.get(timespec, moment.microsecond))
    expected = (written - EPOCH) // timedelta(milliseconds=1)
    assert timeparse.iso8601(moment.isoformat(timespec=timespec)) == expected


@given(st.integers(min_value=0, max_value=timeparse.MAX_MS))
def test_format_ms_round_trip(ms: int) -> None:
    assert timeparse.iso8601(timeparse.format_ms(ms)) == ms


@given(st.integers(min_value=0, max_value=timeparse.MAX_MS // 1000))
def test_seconds_float_round_trip(seconds: int) -> None:
    for millis in (0, 1, 123, 500, 999):
        ms = seconds * 1000 + millis
        assert timeparse.seconds(ms / 1000) == ms
