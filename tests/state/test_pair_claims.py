"""The pair unit's claimable ends (layout 3, docs/state.md §7): a late,
earlier start claims the ends it keeps; repeats of one end time count apart
when k > 1; an entity with thousands of ends in one batch; random logs with
every entity's ends inline and with every entity's ends in the sorted set.
Every value is checked against the brute-force reference."""

from __future__ import annotations

import math
import random

import orjson
import pytest
import redis

import streamer.engine
from streamer.engine import BatchApplier
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.windows.units import compile_tree, reader_units
from tests.eventlog import LogKnobs, generate
from tests.reference import Reference, ingest
from tests.test_replay_vs_reference import check, load
from tests.trees import example

pytestmark = pytest.mark.services

DAY = 86_400_000
T0 = 20_000 * DAY
ids = iter(range(10**9))


def _event(name: str, user: str, t: int) -> bytes:
    return orjson.dumps({"event_type": name, "user_id": user, "time": t, "insert_id": f"i{next(ids)}",
                         "event_properties": {"minutes": 5}})


@pytest.fixture(params=[streamer.engine.PAIR_INLINE_ENDS, 0], ids=["inline", "spilled"])
def inline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Claimable ends kept inline up to the default, or always in the sorted set."""
    monkeypatch.setattr(streamer.engine, "PAIR_INLINE_ENDS", request.param)
    return int(request.param)


def claimable(client: redis.Redis, key_p: str, key_pz: str, entity: str) -> list[int]:
    """An entity's claimable end times, wherever they are kept."""
    record = client.hget(key_p, entity)
    inline = record.decode().split(";")[2] if record else ""
    if inline != "*":
        return [int(x) for x in inline.split(",") if x]
    prefix = f"{len(entity)}:{entity}".encode()
    members = client.zrangebylex(key_pz, b"[" + prefix, b"(" + prefix + b"A")
    return [int(m[len(prefix) : len(prefix) + 15]) for m in members]


def _replay_and_check(client: redis.Redis, tree: Tree, batches: list[list[bytes]], metric_name: str,
                      now: int, at: list[int]) -> Store:
    store = Store(client, namespace=f"claims-{tree.tree}")
    applier = BatchApplier(store, [tree])
    lines: list[bytes] = []
    for batch in batches:
        first = len(lines)
        lines += batch
        applier.apply("0", list(enumerate(lines))[first:], now)
    reference = Reference(tree, ingest(lines, tree, now).accepted)
    metric = next(m for _, m in tree.metrics() if m.name == metric_name)
    got = evaluate(store, compile_tree(tree), at)
    for t, values in zip(at, got, strict=True):
        want, have = reference.metric_value(metric, t), values[metric_name]
        assert want is not None and have is not None, f"@{t}: expected {want}, got {have}"
        assert math.isclose(want, have, rel_tol=1e-9), f"@{t}: expected {want}, got {have}"
    return store


def test_late_start_claims_repeated_ends(redis_client: redis.Redis, inline: int) -> None:
    """Netflix: 3+ titles queued within 1 h of the membership start (k = 3).
    Ends arrive before their start; some share one millisecond."""
    tree = example("netflix")
    start = T0 + 2 * DAY
    same = start + 600_000
    batches = [
        [
            # "triple": three ends in one millisecond, then (late) its start -> converted
            *[_event("title_queued", "triple", same) for _ in range(3)],
            # "double": two ends in one millisecond, one more outside the hour -> not converted
            *[_event("title_queued", "double", same) for _ in range(2)],
            _event("title_queued", "double", start + 2 * 3_600_000),
            # "split": repeats of one time across batches
            _event("title_queued", "split", same),
            _event("title_queued", "early", start - 1_000),  # before its start: never claimed
        ],
        [
            _event("title_queued", "split", same),
            _event("title_queued", "split", same),
            _event("title_queued", "early", same),
            _event("title_queued", "early", same),
            _event("title_queued", "other", start + DAY),
        ],
        [
            _event("membership_started", user, start)
            for user in ("triple", "double", "split", "early")
        ],
    ]
    now = start + 3 * DAY
    at = [start + d * DAY for d in range(1, 4)]
    store = _replay_and_check(redis_client, tree, batches, "new_members_queueing_three_titles", now, at)
    # every claimed end left the claimable set; the one before its start stays,
    # and so does the end of "other", which has no start yet
    readers = compile_tree(tree).readers
    unit = next(reader_units(readers["new_members_queueing_three_titles"]))
    keys = (store.keys.unit(unit, "p"), store.keys.unit(unit, "pz"))
    assert claimable(redis_client, *keys, "early") == [start - 1_000]
    assert claimable(redis_client, *keys, "other") == [start + DAY]
    for user in ("triple", "double", "split"):
        assert claimable(redis_client, *keys, user) == [], user
    assert redis_client.exists(keys[1]) == (inline == 0)
    values = evaluate(store, compile_tree(tree), [start + DAY])[0]
    assert values["new_members_queueing_three_titles"] == pytest.approx(2 / 4)  # triple, split of 4


def test_thousands_of_ends_in_one_batch(redis_client: redis.Redis, inline: int) -> None:
    """More ends for one entity in one batch than one ZADD call takes, then
    its start: the first end after it still counts."""
    tree = example("education")
    start = T0 + 5 * DAY
    heavy = [_event("lesson_completed", "heavy", start - 4_000 * 60_000 + i * 60_000) for i in range(4_500)]
    batches = [heavy, [_event("signed_up", "heavy", start)]]
    now = start + DAY
    store = _replay_and_check(redis_client, tree, batches, "time_to_first_lesson_p50_seconds", now, [start + DAY])
    unit = next(reader_units(compile_tree(tree).readers["time_to_first_lesson_p50_seconds"]))
    assert redis_client.zcard(store.keys.unit(unit, "pz")) == 4_001  # the ends <= the start
    assert redis_client.hget(store.keys.unit(unit, "p"), "heavy") == f"{start};{start + 60_000};*".encode()


PAIR_TREES = ("education", "netflix", "b2b_collaboration", "publisher")


@pytest.mark.parametrize("name", PAIR_TREES)
def test_random_logs_equal_the_reference(redis_client: redis.Redis, inline: int, name: str) -> None:
    """Random logs (late, duplicate, out-of-order, malformed events) with the
    claimable ends inline (up to the default) and all in the sorted set."""
    tree = load(name)
    for seed in range(3):
        log = generate(tree, 1000 + seed, LogKnobs(n_events=600))
        for batch_size in (7, 5000):
            check(redis_client, [tree], log, batch_size)


def _pair_state(client: redis.Redis, store: Store, tree: Tree) -> list[object]:
    """Every pair unit's entity records and sorted set of claimable ends."""
    state: list[object] = []
    for unit in compile_tree(tree).units:
        if unit.kind == "pair":
            state.append(sorted(client.hgetall(store.keys.unit(unit, "p")).items()))
            state.append(client.zrange(store.keys.unit(unit, "pz"), 0, -1))
    return state



@pytest.mark.parametrize(
    ("t0", "rise"), [(T0, DAY // 2), (10**9 - DAY, 0)], ids=["13-digit-times", "9-and-10-digit-times"]
)
def test_append_path_leaves_the_general_layout(redis_client: redis.Redis, t0: int, rise: int) -> None:
    """The script's append path (an entity with no known start: its new ends
    appended to the field's text unparsed) must leave byte for byte the state
    the general path leaves: ends sorted, none at or below the floor, at most
    ``inline`` inline. Values alone would not show a difference (a stale or
    unsorted end changes no value), so random payloads (ends in and out of
    order, a rising floor, ends at or below it, entities past the inline
    limit, now and then a start) go through the script with the path on and
    off, and the unit's keys are compared after every payload. Around 10**9
    (and a floor that stays) an entity's ends have 9 and 10 digits, where the
    path cannot count them from the text's length and scans it instead."""
    plan = compile_tree(example("education"))
    unit = next(u for u in plan.units if u.kind == "pair")
    base = streamer.engine.unit_params(unit, plan)
    rng = random.Random(7)
    stores = [Store(redis_client, namespace=f"append-{on}") for on in (True, False)]
    for store in stores:
        store.delete_namespace()
    floor = t0
    layouts: set[bool] = set()  # spilled or not
    for offset in range(300):
        floor += rng.choice((0, 0, rise))
        ops = []
        heavy = f"h{offset // 50}"  # in-order ends, 50 payloads in a row: past the inline limit
        ops.append([heavy, None, [floor + 2 * DAY + offset * 1000 + i for i in (2, 0, 1)]])
        for entity in sorted(rng.sample(range(30), 5)):
            # u0-u9 may get a start (rarely); the others never do
            start = t0 + rng.randrange(40 * DAY) if entity < 10 and rng.random() < 0.05 else None
            ends = [floor + rng.randrange(-DAY // 2, 2 * DAY) for _ in range(rng.choice((1, 1, 2, 3)))]
            ops.append([f"u{entity}", start, ends])
        for store, on in zip(stores, (True, False), strict=True):
            params = {**base, "floor": floor, "append": on}
            flat = [x for entity, start, ends in ops for x in (entity, start, len(ends), *ends)]
            assert store.apply([(unit, offset - 1, offset, {"e": flat}, params)], "0") == [True]
        on_state, off_state = (
            [sorted(redis_client.hgetall(s.keys.unit(unit, "p")).items()),
             redis_client.zrange(s.keys.unit(unit, "pz"), 0, -1)]
            for s in stores
        )
        assert on_state == off_state, f"after payload {offset}"
        layouts.update(v.rsplit(b";", 1)[1] == b"*" for _, v in on_state[0])
    assert layouts == {True, False}, "the payloads did not reach both the inline and the spilled layout"
