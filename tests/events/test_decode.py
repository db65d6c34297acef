"""Decoder: the edge-case corpus, each shape, each rejection reason, time parsing.

Throughput is a benchmark, not a test: ``python -m streamer.bench.decode``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.events import timeparse
from streamer.events.decode import Decoder
from streamer.events.shapes import shape_for
from streamer.events.types import REASONS, Event, Rejected
from streamer.spec.model import GenericMapping, Source

NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z
T = 1_717_100_000_123  # 2024-05-30T20:13:20.123Z
CORPUS = [
    orjson.loads(line)
    for line in (Path(__file__).parent / "corpus" / "cases.jsonl").read_text("utf-8").splitlines()
    if line.strip()
]
AMPLITUDE = Decoder(Source())


def corpus_message(case: dict[str, Any]) -> bytes:
    if "raw_hex" in case:
        return bytes.fromhex(case["raw_hex"])
    if "raw" in case:
        return str(case["raw"]).encode("utf-8")
    return orjson.dumps(case["obj"])


def corpus_decoder(case: dict[str, Any]) -> Decoder:
    return Decoder(Source.model_validate({"shape": "amplitude", **case.get("source", {})}))


def check(result: Event | Rejected, case: dict[str, Any]) -> None:
    if case["expect"] == "event":
        assert isinstance(result, Event), result
        for name, value in case.get("event", {}).items():
            assert getattr(result, name) == value, name
    else:
        assert isinstance(result, Rejected), result
        assert result.reason == case["expect"], result.detail


# --------------------------------------------------------------------------- corpus


def test_corpus_cases_are_unique_and_well_formed() -> None:
    names = [case["case"] for case in CORPUS]
    assert len(names) == len(set(names))
    for case in CORPUS:
        assert case["expect"] == "event" or case["expect"] in REASONS, case["case"]
        assert sum(key in case for key in ("obj", "raw", "raw_hex")) == 1, case["case"]


def test_corpus_covers_every_reason() -> None:
    assert {case["expect"] for case in CORPUS} >= set(REASONS)


@pytest.mark.parametrize("case", CORPUS, ids=[case["case"] for case in CORPUS])
def test_corpus_case(case: dict[str, Any]) -> None:
    decoder = corpus_decoder(case)
    raw = corpus_message(case)
    check(decoder.decode(raw, NOW), case)
    check(decoder.decode_batch([raw], NOW)[0], case)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    check(decoder.decode(text, NOW), case)


@pytest.mark.parametrize(
    "case",
    [case for case in CORPUS if case["expect"] not in ("not_json", "oversize")],
    ids=lambda case: case["case"],
)
def test_decode_obj_agrees_with_decode(case: dict[str, Any]) -> None:
    decoder = corpus_decoder(case)
    raw = corpus_message(case)
    assert decoder.decode_obj(orjson.loads(raw), len(raw), NOW) == decoder.decode(raw, NOW)


# --------------------------------------------------------------------------- amplitude


def amplitude_event(**fields: Any) -> bytes:
    event: dict[str, Any] = {"event_type": "lesson_completed", "user_id": "u1", "time": T}
    event.update(fields)
    return orjson.dumps(event)


def test_amplitude_event_references_the_parsed_objects() -> None:
    obj = {
        "event_type": "learning_viewed",
        "user_id": "u7",
        "device_id": "d7",
        "time": T,
        "insert_id": "ins-1",
        "event_properties": {"learning_id": "L1"},
        "user_properties": {"plan": "pro"},
        "groups": {"org": "acme"},
    }
    event = AMPLITUDE.decode_obj(obj, 200, NOW)
    assert event == Event(
        name="learning_viewed",
        user="u7",
        time_ms=T,
        insert_id="ins-1",
        props={"learning_id": "L1"},
        groups={"org": "acme"},
        user_props={"plan": "pro"},
    )
    assert isinstance(event, Event)
    assert event.props is obj["event_properties"]
    assert event.groups is obj["groups"]
    assert event.user_props is obj["user_properties"]


def test_missing_objects_are_distinct_empty_dicts() -> None:
    one = AMPLITUDE.decode(amplitude_event(), NOW)
    two = AMPLITUDE.decode(amplitude_event(), NOW)
    assert isinstance(one, Event) and isinstance(two, Event)
    assert one.props == {} and one.props is not two.props


def test_future_skew_comes_from_the_source() -> None:
    decoder = Decoder(Source(future_skew="5m"))
    assert isinstance(decoder.decode(amplitude_event(time=NOW + 300_000), NOW), Event)
    late = decoder.decode(amplitude_event(time=NOW + 300_001), NOW)
    assert late == Rejected(
        "future_time",
        "time 2024-06-01T00:05:00.001Z is after 2024-06-01T00:05:00.000Z"
        " (processing clock + future_skew)",
    )


def test_a_clock_before_the_epoch_does_not_break_details() -> None:
    result = AMPLITUDE.decode(amplitude_event(), -(10**15))
    assert result == Rejected(
        "future_time",
        "time 2024-05-30T20:13:20.123Z is after -999999996400000 ms (processing clock + future_skew)",
    )


def test_the_clock_is_the_argument() -> None:
    raw = amplitude_event(time=NOW + 7_200_000)
    assert isinstance(AMPLITUDE.decode(raw, NOW), Rejected)
    assert isinstance(AMPLITUDE.decode(raw, NOW + 3_600_000), Event)


# --------------------------------------------------------------------------- segment and generic


def test_segment_track_call_mapping() -> None:
    decoder = Decoder(Source(shape="segment"))
    event = decoder.decode(
        orjson.dumps(
            {
                "type": "track",
                "event": "Learning Viewed",
                "userId": 42,
                "anonymousId": "a-1",
                "timestamp": "2024-05-30T20:13:20.123Z",
                "messageId": "ajs-1",
                "properties": {"learning_id": "L1"},
                "context": {"traits": {"plan": "pro"}, "groupId": "acme"},
            }
        ),
        NOW,
    )
    assert event == Event(
        "Learning Viewed",
        "42",
        T,
        "ajs-1",
        {"learning_id": "L1"},
        {"groupId": "acme"},
        {"plan": "pro"},
    )


def test_generic_mapping_reads_dotted_paths() -> None:
    mapping = GenericMapping(
        event="meta.kind",
        user="who.id",
        time="meta.at",
        time_format="iso8601",
        insert_id="meta.id",
        properties="payload",
        groups="who.orgs",
        user_properties="who.traits",
    )
    decoder = Decoder(Source(shape="generic", mapping=mapping))
    obj = {
        "meta": {"kind": "lesson_completed", "at": "2024-05-30T22:13:20.123+02:00", "id": 9},
        "who": {"id": "u1", "orgs": {"org": "acme"}, "traits": {}},
        "payload": {"minutes": 3},
    }
    assert decoder.decode_obj(obj, 100, NOW) == Event(
        "lesson_completed", "u1", T, "9", {"minutes": 3}, {"org": "acme"}, {}
    )


def test_generic_shape_requires_a_mapping() -> None:
    source = Source.model_construct(shape="generic", mapping=None)
    with pytest.raises(ValueError, match="mapping"):
        shape_for(source)


# --------------------------------------------------------------------------- any input


def test_oversize_is_checked_before_parsing() -> None:
    # Not JSON at all, yet oversize: the size is checked first.
    huge = b'{"event_type": "a", "user_id": "u1", "pad": "' + b"x" * 10_000_000
    assert AMPLITUDE.decode(huge, NOW) == Rejected(
        "oversize", f"{len(huge)} bytes, more than max_event_bytes 65536"
    )
    assert AMPLITUDE.decode(huge.decode(), NOW) == Rejected(
        "oversize", f"{len(huge)} bytes, more than max_event_bytes 65536"
    )
    assert AMPLITUDE.decode_obj({}, 65_537, NOW) == Rejected(
        "oversize", "65537 bytes, more than max_event_bytes 65536"
    )


def test_str_size_is_utf8_bytes() -> None:
    decoder = Decoder(Source(max_event_bytes=256))
    text = amplitude_event(event_properties={"pad": "€" * 60}).decode()
    assert len(text) < 256 < len(text.encode())
    result = decoder.decode(text, NOW)
    assert isinstance(result, Rejected) and result.reason == "oversize"


def test_str_with_lone_surrogate_is_not_json() -> None:
    result = AMPLITUDE.decode('{"event_type": "\ud800", "user_id": "u1", "time": 1}', NOW)
    assert isinstance(result, Rejected) and result.reason == "not_json"


def test_other_buffers_and_types() -> None:
    raw = amplitude_event()
    assert isinstance(AMPLITUDE.decode(bytearray(raw), NOW), Event)  # type: ignore[arg-type]
    assert isinstance(AMPLITUDE.decode(memoryview(raw), NOW), Event)  # type: ignore[arg-type]
    number: Any = 12
    nothing: Any = None
    assert AMPLITUDE.decode(number, NOW) == Rejected(
        "not_json", "the event is 12, not bytes or str"
    )
    assert AMPLITUDE.decode(nothing, NOW) == Rejected(
        "not_json", "the event is None, not bytes or str"
    )
    batch = AMPLITUDE.decode_batch([raw, "{", b"[]", bytearray(raw)], NOW)  # type: ignore[list-item]
    assert [type(r).__name__ for r in batch] == ["Event", "Rejected", "Rejected", "Event"]


def test_decode_obj_accepts_python_values_json_cannot_carry() -> None:
    base = {"event_type": "a", "user_id": "u1"}
    for value, reason in [
        (float("nan"), "bad_time"),
        (float("inf"), "bad_time"),
        (10**5000, "bad_time"),
        (b"1717100000123", "bad_time"),
        (object(), "bad_time"),
    ]:
        result = AMPLITUDE.decode_obj({**base, "time": value}, 10, NOW)
        assert isinstance(result, Rejected) and result.reason == reason, value
        assert len(result.detail) < 200
    huge_user = AMPLITUDE.decode_obj({**base, "user_id": 10**5000, "time": T}, 10, NOW)
    assert isinstance(huge_user, Rejected) and huge_user.reason == "no_user"
    assert AMPLITUDE.decode_obj((), 2, NOW) == Rejected(
        "not_object", "the event is an array, not a JSON object"
    )


def test_details_are_bounded() -> None:
    long = "x" * 5000
    for raw in (
        amplitude_event(time="\x00" * 100),
        amplitude_event(time="\U000e0001" * 40),
        amplitude_event(event_type=None, user_id=long),
        amplitude_event(time=long),
        amplitude_event(event_properties=long),
        amplitude_event(insert_id=[long]),
        b"{" + long.encode(),
    ):
        result = AMPLITUDE.decode(raw, NOW)
        assert isinstance(result, Rejected)
        assert len(result.detail) <= 200, result.detail


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"[1]", "the event is an array, not a JSON object"),
        (b'"x"', "the event is a string, not a JSON object"),
        (b"3.5", "the event is a number, not a JSON object"),
        (b"false", "the event is a boolean, not a JSON object"),
        (b"null", "the event is null, not a JSON object"),
        (amplitude_event(event_type=""), "event_type '' is not a non-empty string"),
        (amplitude_event(event_type=None), "no event_type"),
        (
            amplitude_event(user_id=None),
            "neither user_id nor device_id is a non-empty string or integer",
        ),
        (amplitude_event(time=None), "no time"),
        (amplitude_event(time="soon"), "time 'soon' is not a number of milliseconds"),
        (
            amplitude_event(time=-5),
            "time -5 is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z",
        ),
        (amplitude_event(time=True), "time True is a boolean, not a time"),
        (amplitude_event(groups=["acme"]), "groups an array is not an object"),
        (amplitude_event(insert_id=2.5), "insert_id 2.5 is not a string"),
    ],
)
def test_rejection_details(raw: bytes, detail: str) -> None:
    result = AMPLITUDE.decode(raw, NOW)
    assert isinstance(result, Rejected) and result.detail == detail


# --------------------------------------------------------------------------- Event construction


def test_an_event_is_frozen_and_compares_by_value() -> None:
    props: dict[str, Any] = {"a": 1}
    event = Event("n", "u", 5, None, props, {}, {})
    assert event == Event("n", "u", 5, None, {"a": 1}, {}, {})
    assert event != Event("n", "u", 6, None, props, {}, {})
    assert repr(event) == "Event(name='n', user='u', time_ms=5, insert_id=None, props={'a': 1}, groups={}, user_props={})"
    with pytest.raises(AttributeError):
        event.name = "m"  # type: ignore[misc]
    # defaults are fresh objects, never shared between events
    assert Event("n", "u", 5).props is not Event("n", "u", 5).props


# --------------------------------------------------------------------------- time parsing


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000+00:00", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
        ("2024-03-01T00:59:59.999+01:00", 1_709_251_199_999),
        ("2024-05-30T20:13:20,123Z", T),
        ("2024-05-30T20:13:20.1234567890123Z", T),
        ("9999-12-31T23:59:59.999Z", timeparse.MAX_MS),
        ("2000-02-29T12:00:00", 951_825_600_000),
    ],
)
def test_iso8601(text: str, ms: int) -> None:
    assert timeparse.iso8601(text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2024-06-31T00:00:00Z",
        "2024-00-10T00:00:00Z",
        "2024-06-00T00:00:00Z",
        "2024-06-01T23:60:00Z",
        "2024-06-01T12:00:00.Z",
        "2024-06-01T12:00:00+1:00",
        "2024-06-01T12:00:00+01:60",
        "2024-06-01T12:00:00GMT",
        "2024-06-01",
        " 2024-06-01T12:00:00Z",
        "2024-06-01T12:00:00Z\n",
        "",
    ],
)
def test_iso8601_rejects(text: str) -> None:
    assert isinstance(timeparse.iso8601(text), str)


def test_seconds_and_millis() -> None:
    assert timeparse.seconds(1_717_100_000) == 1_717_100_000_000
    assert timeparse.seconds(1_717_100_000.123) == T
    assert timeparse.seconds(0.0009) == 1  # rounded, not truncated
    assert timeparse.seconds("1717100000.1") == 1_717_100_000_100
    assert timeparse.seconds(timeparse.MAX_MS // 1000) == timeparse.MAX_MS - 999
    assert isinstance(timeparse.seconds(timeparse.MAX_MS // 1000 + 1), str)
    assert isinstance(timeparse.seconds(253_402_300_799.9996), str)  # rounds past year 9999
    assert timeparse.millis(T + 0.999) == T
    assert timeparse.millis("00001") == 1
    assert isinstance(timeparse.millis("9" * 21), str)
    assert isinstance(timeparse.millis(float("nan")), str)


def test_format_ms_round_trips() -> None:
    for ms in (0, 1, T, 951_782_400_000, timeparse.MAX_MS):
        assert timeparse.iso8601(timeparse.format_ms(ms)) == ms
    assert timeparse.format_ms(T) == "2024-05-30T20:13:20.123Z"
