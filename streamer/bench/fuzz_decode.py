"""Fuzz target ``decode``: ``Decoder.decode`` of every source shape.

Each message goes through six decoders (Amplitude, Segment, generic with
millisecond, second and ISO 8601 times, and an Amplitude source with the
smallest ``max_event_bytes`` and a one-second skew); one decode call is one
input. The contract checked on every result:

- nothing raises;
- a ``Rejected`` has a ``reason`` in ``REASONS`` and a non-empty ``detail`` of
  at most 200 characters;
- an ``Event`` has a non-empty name and user, an ``int`` time in
  ``[0, now + future_skew]``, an insert id that is None or a non-empty string,
  and ``dict`` properties, groups and user properties;
- ``decode_batch`` answers, message for message, what ``decode`` answers.

Engines: ``hypothesis`` (near-valid events of each shape: every field well
formed or any JSON value) and ``mutate`` (random byte edits and JSON value
swaps of the malformed corpus, of simulated events and of what hypothesis
produced). ``atheris`` (coverage guided) lives in streamer.bench.fuzz_atheris.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.fuzz_core import Budget, BudgetSpent, Tally, mutate_bytes
from streamer.events.decode import Decoder
from streamer.events.types import REASONS, Event, Rejected
from streamer.spec.model import GenericMapping, Source

NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z, as the corpus
CORPUS = Path(__file__).resolve().parents[2] / "tests" / "events" / "corpus" / "cases.jsonl"

DECODERS = (
    Decoder(Source(shape="amplitude")),
    Decoder(Source(shape="segment")),
    Decoder(Source(shape="generic", mapping=GenericMapping(
        event="e.name", user="e.who", time="at", time_format="ms", insert_id="id",
        properties="p", groups="g", user_properties="u.traits"))),
    Decoder(Source(shape="generic", mapping=GenericMapping(
        event="name", user="user", time="ts", time_format="s", insert_id="id", properties="props"))),
    Decoder(Source(shape="generic", mapping=GenericMapping(
        event="name", user="user", time="ts", time_format="iso8601"))),
    Decoder(Source(shape="amplitude", max_event_bytes=256, future_skew=1)),
)


def contract(result: object, decoder: Decoder) -> str | None:
    """What is wrong with ``result``, or None."""
    if isinstance(result, Rejected):
        if result.reason not in REASONS:
            return f"unknown reason {result.reason!r}"
        if not isinstance(result.detail, str) or not result.detail or len(result.detail) > 200:
            return f"bad detail for {result.reason}: {result.detail!r:.80}"
        return None
    if not isinstance(result, Event):
        return f"returned {type(result).__name__}"
    if not isinstance(result.name, str) or not result.name:
        return "event without a name"
    if not isinstance(result.user, str) or not result.user:
        return "event without a user"
    if type(result.time_ms) is not int or not 0 <= result.time_ms <= NOW + decoder.source.future_skew * 1000:
        return f"event time {result.time_ms!r} out of range"
    if result.insert_id is not None and (not isinstance(result.insert_id, str) or not result.insert_id):
        return f"insert id {result.insert_id!r}"
    for mapping in (result.props, result.groups, result.user_props):
        if type(mapping) is not dict:
            return f"{type(mapping).__name__} where an object belongs"
    return None


def try_one(raw: bytes, tally: Tally, engine: str) -> None:
    """Decode ``raw`` with every decoder (and once as a batch); record it all."""
    for decoder in DECODERS:
        tally.inputs[engine] += 1
        try:
            result = decoder.decode(raw, NOW)
        except Exception as exc:
            tally.exception(engine, raw, exc)
            continue
        problem = contract(result, decoder)
        if problem is not None:
            tally.crash(engine, "contract", problem, raw)
            continue
        tally.outcomes[result.reason if isinstance(result, Rejected) else "event"] += 1
        try:
            batch = decoder.decode_batch([raw, raw], NOW)
        except Exception as exc:
            tally.exception(engine, raw, exc)
            continue
        if batch != [result, result]:
            tally.crash(engine, "contract", "decode_batch differs from decode", raw)


# --------------------------------------------------------------------------- seeds


def corpus_seeds() -> list[bytes]:
    """Every message of the malformed corpus, as bytes."""
    seeds = []
    for line in CORPUS.read_text().splitlines():
        if not line.strip():
            continue
        case = orjson.loads(line)
        if "raw_hex" in case:
            seeds.append(bytes.fromhex(case["raw_hex"]))
        elif "raw" in case:
            seeds.append(case["raw"].encode("utf-8", "surrogatepass"))
        else:
            seeds.append(orjson.dumps(case["obj"]))
    return seeds


def simulated_seeds(n: int = 200) -> list[bytes]:
    """Well-formed events of every shape, from the education simulator."""
    from itertools import islice

    from streamer.events import timeparse
    from streamer.sim.models import simulate
    from streamer.sim.scenarios import Drift

    out = []
    for event in islice(simulate("education", NOW - 86_400_000, 1, Drift(), seed=3, users=40), n):
        e: dict[str, Any] = dict(event)
        out.append(orjson.dumps(e))
        props = e.get("event_properties", {})
        out.append(orjson.dumps({"type": "track", "event": e["event_type"], "userId": e["user_id"],
                                 "timestamp": timeparse.format_ms(e["time"]), "messageId": e.get("insert_id"),
                                 "properties": props, "context": {"traits": {}, "groupId": "g1"}}))
        out.append(orjson.dumps({"e": {"name": e["event_type"], "who": e["user_id"]}, "at": e["time"],
                                 "id": e.get("insert_id"), "p": props, "u": {"traits": {"plan": "x"}}}))
        out.append(orjson.dumps({"name": e["event_type"], "user": e["user_id"], "ts": e["time"] / 1000,
                                 "props": props}))
    return out


# --------------------------------------------------------------------------- mutation engine

ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**63, 2**64, -(2**63) - 1, 1.5, -0.0, 1e308, "", " ", "x" * 300,
    "\u0000", "\U0001f600", "1717200000000", "1717200000.999", "2024-06-01T00:00:00Z",
    "2024-02-30T00:00:00Z", "2024-06-01T23:59:60Z", "2024-06-01T00:00:00+24:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999-23:59", "2024-06-01 00:00:00,5+0530", "١٧١٧٢٠٠٠٠٠", "1_717_200_000",
    [], {}, [[[[]]]], {"a": {"b": {"c": None}}}, {"": 1}, {"groupId": [1, 2]}, "track", "identify",
    253_402_300_799_999, 253_402_300_800_000, 253_402_300_799.999, 1e19, -1e-300,
)
KEYS = ("event_type", "user_id", "device_id", "time", "insert_id", "event_properties", "user_properties",
        "groups", "type", "event", "userId", "anonymousId", "timestamp", "messageId", "properties",
        "context", "traits", "groupId", "e", "name", "who", "at", "id", "p", "g", "u", "user", "ts", "props")


def mutate_json(obj: Any, rng: random.Random) -> Any:
    """``obj`` with one value somewhere replaced, deleted or added."""
    if not isinstance(obj, dict):
        return rng.choice(ODD_VALUES)
    out = dict(obj)
    keys = list(out)
    op = rng.randrange(4)
    if op == 0 or not keys:
        out[rng.choice(KEYS)] = rng.choice(ODD_VALUES)
    elif op == 1:
        del out[rng.choice(keys)]
    elif op == 2:
        key = rng.choice(keys)
        out[key] = mutate_json(out[key], rng)
    else:
        out[rng.choice(keys)] = rng.choice(ODD_VALUES)
    return out


def run_mutate(budget: Budget, tally: Tally, seeds: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    parsed = []
    for raw in seeds:
        try:
            parsed.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    while not budget.done(tally):
        if rng.random() < 0.5 or not parsed:
            raw = mutate_bytes(rng.choice(seeds), rng, seeds)
        else:
            obj = rng.choice(parsed)
            for _ in range(rng.randint(1, 3)):
                obj = mutate_json(obj, rng)
            try:
                raw = orjson.dumps(obj)
            except TypeError:  # an integer orjson cannot write: JSON never holds it
                continue
        try_one(raw, tally, "mutate")


# --------------------------------------------------------------------------- hypothesis engine


def _strategies() -> Any:
    from hypothesis import strategies as st

    scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
               | st.sampled_from([v for v in ODD_VALUES if not isinstance(v, list | dict)]))
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                          max_leaves=12)
    names = st.text(min_size=1, max_size=12)
    times = st.integers(0, NOW + 2 * 3_600_000)
    iso = times.map(lambda t: __import__("streamer.events.timeparse", fromlist=["x"]).format_ms(t))
    objects = st.dictionaries(st.text(max_size=6), scalars, max_size=3)

    def fields(**kw: Any) -> Any:
        items = list(kw.items())
        return st.fixed_dictionaries({k: st.one_of(v, values) for k, v in items[:3]},
                                     optional={k: st.one_of(v, values) for k, v in items[3:]})

    return st.one_of(
        fields(event_type=names, user_id=names | st.integers(), time=times | times.map(str) | st.floats(0, NOW),
               device_id=names, insert_id=names, event_properties=objects, user_properties=objects, groups=objects),
        fields(event=names, userId=names, timestamp=iso, type=st.sampled_from(["track", "identify"]),
               anonymousId=names, messageId=names, properties=objects,
               context=fields(traits=objects, groupId=values)),
        fields(e=fields(name=names, who=names), at=times, id=names, p=objects, g=objects,
               u=st.fixed_dictionaries({"traits": objects})),
        fields(name=names, user=names, ts=times.map(lambda t: t / 1000) | iso | times.map(lambda t: str(t // 1000)),
               props=objects, id=names),
        values,
    )


def run_hypothesis(budget: Budget, tally: Tally, seed: int, keep: list[bytes]) -> None:
    """Rounds of ``@given`` (generation only, no database, no shrinking) until
    the budget is spent; every generated object is also kept as a mutation seed."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    events = _strategies()
    round_no = 0
    while not budget.done(tally):
        round_no += 1

        @hseed(seed * 1_000_003 + round_no)
        @settings(max_examples=2000, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(events)
        def one(obj: Any) -> None:
            if budget.done(tally):
                raise BudgetSpent
            try:
                raw = orjson.dumps(obj)
            except TypeError:
                return
            if len(keep) < 5000:
                keep.append(raw)
            try_one(raw, tally, "hypothesis")

        try:
            one()
        except BudgetSpent:
            return
