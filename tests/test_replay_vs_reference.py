"""The Redis-backed engine (``streamer.replay``) against the brute-force reference.

For every tree in definitions/ (and a Segment-shaped copy of the example trees),
hypothesis generates randomized raw logs (tests/eventlog.py) with late,
duplicate, out-of-order and malformed events, replays them into a real Redis and
asserts that every metric at several evaluation times, and the accepted / late /
duplicate / rejected counts, equal tests/reference.py.
"""

from __future__ import annotations

import math
import os
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

import tests.test_reference as hand
from streamer.engine import BatchApplier, Judged, PreparedBatch, Progress
from streamer.replay import REPLAY_PARTITION, TreeValues, replay, tree_values
from streamer.spec.model import Tree
from streamer.state.breakdowns import breakdown_values
from streamer.state.store import Store
from streamer.windows.units import compile_tree
from tests.eventlog import (
    MS_PER_DAY,
    GeneratedLog,
    LogKnobs,
    default_knobs,
    generate,
    logs,
    segment_variant,
)
from tests.reference import Reference, first_values, ingest, is_approximate, seen_events
from tests.reference import breakdown_values as reference_breakdown

pytestmark = pytest.mark.services

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
TREE_FILES = sorted(p.stem for p in DEFINITIONS.glob("*.yaml"))
EXAMPLE_TREES = ("education", "learning_users")
BATCH_SIZES = (1, 7, 5000)
HLL_REL_TOL = 0.05  # HyperLogLog: 0.81% standard error, with room for tiny counts
# 25 keeps the suite fast; raise it for a deeper search (e.g. 1000 before a release)
EXAMPLES = int(os.environ.get("NORTHSTAR_REPLAY_EXAMPLES", "25"))

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # we FLUSHALL ourselves per example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def load(name: str) -> Tree:
    doc = YAML(typ="safe").load((DEFINITIONS / f"{name}.yaml").read_text())
    return Tree.model_validate(doc)


def eval_times(log: GeneratedLog) -> list[int]:
    """UTC midnights across the span, plus one time between midnights."""
    k = log.knobs
    return [*log.midnights(), k.base_ms + 17 * MS_PER_DAY + 5 * 3_600_000 + 1]


def same(expected: float | None, got: float | None, *, approximate: bool = False) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if approximate:
        return math.isclose(expected, got, rel_tol=HLL_REL_TOL, abs_tol=1.0)
    return math.isclose(expected, got, rel_tol=1e-9, abs_tol=1e-9)


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def replay_judging_ahead(
    lines: Sequence[bytes],
    trees: Sequence[Tree],
    client: redis.Redis,
    *,
    at_ms: Sequence[int],
    now_ms: int,
    batch_size: int,
    ahead: int,
    drop_at: int | None = None,
) -> list[TreeValues]:
    """``replay`` in a worker lane's order: up to ``ahead`` batches are judged
    (round trip 1) before the oldest judged one applies (``Progress`` carries
    what the lane applied). ``drop_at``: once that many records were judged,
    the batches judged and not applied are dropped, as by a crash or a
    rebalance, and the records are read again from the first of them, in
    batches of another size, by a lane that knows nothing."""
    store = Store(client, namespace="replay")
    store.delete_namespace()
    applier = BatchApplier(store, trees)
    records = list(enumerate(line for line in lines if line.strip()))
    counts: Counter[str] = Counter()
    progress = Progress()
    judged: deque[tuple[PreparedBatch, Judged]] = deque()
    position, size = 0, batch_size
    while position < len(records) or judged:
        while position < len(records) and len(judged) <= ahead:
            prepared = applier.prepare(records[position : position + size], now_ms)
            position = prepared.last + 1
            judged.append((prepared, applier.judge(REPLAY_PARTITION, prepared)))
        if drop_at is not None and position >= drop_at and len(judged) > 1:
            position, drop_at = judged[0][0].first, None
            judged.clear()
            progress, size = Progress(), 2 * size + 1
            continue
        prepared, verdicts = judged.popleft()
        counts.update(applier.apply_judged(REPLAY_PARTITION, prepared, verdicts, progress).counts)
    return tree_values(applier, counts, at_ms)


def check(
    client: redis.Redis,
    trees: Sequence[Tree],
    log: GeneratedLog,
    batch_size: int,
    at_ms: Sequence[int] | None = None,
    ahead: int = 0,
    drop_at: int | None = None,
) -> None:
    """Replay ``log`` into a clean Redis and compare every tree with the
    reference; ``ahead``/``drop_at``: judging ahead (``replay_judging_ahead``)."""
    at_ms = list(at_ms or eval_times(log))
    client.flushall()
    if ahead or drop_at is not None:
        results = replay_judging_ahead(
            log.lines, trees, client, at_ms=at_ms, now_ms=log.now_ms, batch_size=batch_size,
            ahead=ahead, drop_at=drop_at,
        )
    else:
        results = replay(
            log.lines, trees, client, at_ms=at_ms, now_ms=log.now_ms, batch_size=batch_size
        )
    by_key = {(r.tree, r.at_ms): r for r in results}
    problems: list[str] = []
    for tree in trees:
        ingested = ingest(log.lines, tree, log.now_ms)
        reference = Reference(tree, ingested.accepted)
        for at in at_ms:
            got = by_key.get((tree.tree, at))
            if got is None:
                problems.append(f"{tree.tree} @ {at}: no result from replay")
                continue
            if nonzero(got.counts) != nonzero(ingested.counts):
                problems.append(
                    f"{tree.tree} @ {at}: counts expected {nonzero(ingested.counts)}, "
                    f"got {nonzero(got.counts)}"
                )
            for _, metric in tree.metrics():
                want = reference.metric_value(metric, at)
                if metric.name not in got.metrics:
                    problems.append(f"{tree.tree}.{metric.name} @ {at}: missing from replay")
                    continue
                have = got.metrics[metric.name]
                if not same(want, have, approximate=is_approximate(tree, metric)):
                    problems.append(
                        f"{tree.tree}.{metric.name} @ {at} (E-base = "
                        f"{(at - log.knobs.base_ms) / MS_PER_DAY:g} d): "
                        f"expected {want!r}, got {have!r}"
                    )
    problems += breakdown_problems(client, trees, log, at_ms)
    assert not problems, (
        f"seed={log.seed} batch_size={batch_size} ahead={ahead} drop_at={drop_at} knobs={log.knobs}\n"
        + "\n".join(problems)
    )


def breakdown_problems(
    client: redis.Redis, trees: Sequence[Tree], log: GeneratedLog, at_ms: Sequence[int]
) -> list[str]:
    """Per-label values of every broken-down metric (docs/semantics.md §5) vs
    the reference: one partition, so the admitted values are the first seen
    in log order. The generated logs give breakdown fields many values, so
    the cap and `other` are exercised."""
    problems: list[str] = []
    store = Store(client, namespace="replay")
    for tree in trees:
        if not any(m.breakdown for _, m in tree.metrics()):
            continue
        accepted = ingest(log.lines, tree, log.now_ms).accepted
        seen = seen_events([line for line in log.lines if line.strip()], tree, log.now_ms)
        rows = breakdown_values(store, compile_tree(tree), at_ms)
        for at, row in zip(at_ms, rows, strict=True):
            for name, labels in row.items():
                metric = tree.metric(name)
                want = reference_breakdown(tree, metric, accepted, first_values(metric, seen), at)
                got = [(lv.label, lv.value) for lv in labels]
                approximate = is_approximate(tree, metric)
                if [w[0] for w in want] != [g[0] for g in got] or not all(
                    same(w[1], g[1], approximate=approximate) for w, g in zip(want, got, strict=True)
                ):
                    problems.append(f"{tree.tree}.{name} by label @ {at}: expected {want}, got {got}")
    return problems


# --------------------------------------------------------------------------- property tests


def check_drawn(client: redis.Redis, tree: Tree, data: st.DataObject) -> None:
    """``check`` on a log, a batch size and a lane's judging ahead (none, or
    up to two batches, maybe dropped once and read again) drawn for ``tree``."""
    log = data.draw(logs(tree), label="log")
    batch_size = data.draw(st.sampled_from(BATCH_SIZES), label="batch_size")
    ahead = data.draw(st.sampled_from((0, 1, 2)), label="ahead")
    drop_at = data.draw(st.none() | st.integers(1, max(1, len(log.lines))), label="drop_at") if ahead else None
    check(client, [tree], log, batch_size, ahead=ahead, drop_at=drop_at)


@pytest.mark.parametrize("name", TREE_FILES)
@SETTINGS
@given(data=st.data())
def test_replay_equals_reference(name: str, redis_client: redis.Redis, data: st.DataObject) -> None:
    check_drawn(redis_client, load(name), data)


@pytest.mark.parametrize("name", TREE_FILES)
@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(data=st.data())
def test_replay_equals_reference_segment(
    name: str, redis_client: redis.Redis, data: st.DataObject
) -> None:
    check_drawn(redis_client, segment_variant(load(name)), data)


def relational_variant(variant: str) -> Tree:
    """The learning-users tree (the shipped one with relational measures):
    ``hourly`` at an hourly resolution, where a week is 168 buckets, so a
    viewer's bucket set spans several 32-bit words and one view moves many
    window ends; ``ungrouped`` without its grouped input, so its other
    relational metrics keep a unit of their own instead of sharing the
    grouped one (state.md §1.2)."""
    doc = load("learning_users").model_dump(by_alias=True, exclude_none=True)
    if variant == "hourly":
        doc["resolution"] = 3600
    else:
        doc["inputs"] = [m for m in doc["inputs"] if m["measure"].get("result") != "groups"]
    tree = Tree.model_validate({**doc, "tree": f"learning_users_{variant}"})
    groups = [u.params["group"] for u in compile_tree(tree).units if u.kind == "relational"]
    assert groups == ([["group.org", 5]] if variant == "hourly" else [None]), groups
    return tree


@pytest.mark.parametrize("variant", ["hourly", "ungrouped"])
@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(data=st.data())
def test_replay_equals_reference_relational(variant: str, redis_client: redis.Redis, data: st.DataObject) -> None:
    check_drawn(redis_client, relational_variant(variant), data)


@settings(SETTINGS, max_examples=10)
@given(seed=st.integers(0, 2**32 - 1))
def test_replay_of_several_trees_at_once(redis_client: redis.Redis, seed: int) -> None:
    """All trees share one replay (one Redis): no cross-talk between their states."""
    trees = [load(name) for name in TREE_FILES]
    amplitude = [t for t in trees if t.source.shape == "amplitude"]
    # one log mixing every tree's events, its lines taken from each tree's log in turn
    parts = [generate(t, seed + i, LogKnobs(n_events=120)) for i, t in enumerate(amplitude)]
    lines = [line for group in zip(*(p.lines for p in parts), strict=True) for line in group]
    windows = tuple(sorted({w for p in parts for w in p.windows_days}))
    mixed = GeneratedLog(lines=lines, knobs=parts[0].knobs, seed=seed, windows_days=windows)
    check(redis_client, amplitude, mixed, 5000)


# --------------------------------------------------------------------------- batching


@pytest.mark.parametrize("name", EXAMPLE_TREES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_size_does_not_change_results(
    redis_client: redis.Redis, name: str, seed: int
) -> None:
    """The same log with batches of 1, 7 and 5000 lines gives the reference's
    values; so does a lane's order (two batches judged ahead of the applying
    one), with the judged batches dropped once and read again."""
    tree = load(name)
    knobs = LogKnobs(n_events=250, p_late=0.05, p_duplicate=0.1, p_malformed=0.05)
    log = generate(tree, seed, knobs)
    for batch_size in BATCH_SIZES:
        check(redis_client, [tree], log, batch_size)
    for batch_size in (1, 7):
        check(redis_client, [tree], log, batch_size, ahead=2)
        check(redis_client, [tree], log, batch_size, ahead=2, drop_at=len(log.lines) // 2)


@pytest.mark.parametrize("name", TREE_FILES)
def test_generated_logs_exercise_every_path(name: str) -> None:
    """The generator really produces accepted, late, duplicate and rejected lines,
    and every metric of the tree is non-zero somewhere (guards against a generator
    that silently degenerates into logs where nothing is compared)."""
    tree = load(name)
    totals: dict[str, int] = {}
    nonzero_metrics: set[str] = set()
    for seed in range(8):
        knobs = replace(default_knobs(tree), n_items=6, n_orgs=1, p_late=0.05, p_malformed=0.05)
        log = generate(tree, seed, knobs)
        ingested = ingest(log.lines, tree, log.now_ms)
        for k, v in ingested.counts.items():
            totals[k] = totals.get(k, 0) + v
        reference = Reference(tree, ingested.accepted)
        for at in log.midnights():
            nonzero_metrics |= {m for m, v in reference.values(at).items() if v}
    assert {"accepted", "late", "duplicate"} <= totals.keys(), totals
    assert any(k.startswith("rejected:") for k in totals), totals
    silent = {m.name for _, m in tree.metrics()} - nonzero_metrics
    assert not silent, f"{name}: metrics never non-zero on generated logs: {silent}"


# --------------------------------------------------------------------------- hand-computed cases


def _uses_reference(test: object) -> bool:
    code = getattr(test, "__code__", None)
    names = code.co_names if code is not None else ()
    return callable(test) and ("values" in names or "reference_counts" in names)


HAND_TESTS = {
    name: test
    for name, test in vars(hand).items()
    if name.startswith("test_")
    and _uses_reference(test)
    and not getattr(test, "pytestmark", None)  # parametrized ones need arguments
}


@pytest.mark.parametrize("name", sorted(HAND_TESTS))
def test_engine_on_hand_computed_cases(
    name: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every hand-computed case of tests/test_reference.py, answered by the engine:
    its expected numbers were worked out by hand, not by either implementation."""

    def engine_values(lines: list[bytes], tree: Tree, at_ms: int) -> dict[str, float | None]:
        redis_client.flushall()
        (result,) = replay(lines, [tree], redis_client, at_ms=[at_ms], now_ms=hand.NOW)
        return result.metrics

    def engine_counts(lines: list[bytes], tree: Tree, now_ms: int) -> dict[str, int]:
        redis_client.flushall()
        (result,) = replay(lines, [tree], redis_client, at_ms=[hand.D0], now_ms=now_ms)
        return nonzero(result.counts)

    monkeypatch.setattr(hand, "values", engine_values)
    monkeypatch.setattr(hand, "reference_counts", engine_counts)
    HAND_TESTS[name]()
