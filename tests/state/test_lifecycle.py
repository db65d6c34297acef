"""A definition change end to end, against a real Redis and the brute-force
reference: the changed metric starts fresh under a new fingerprint while the
others keep their state, a backfill from the event file gives it the values
the reference computes on the full log, and the old fingerprint expires."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import redis
from ruamel.yaml import YAML

from streamer.backfill import backfill_file, file_records, scratch_namespace
from streamer.engine import BatchApplier
from streamer.replay import REPLAY_PARTITION
from streamer.spec.model import Tree
from streamer.state.evaluate import evaluate
from streamer.state.expiry import Refresher, Retention, touch
from streamer.state.store import Store
from streamer.testing import wait_until
from streamer.windows.breakdown import REGISTRY, compile_breakdowns
from streamer.windows.units import compile_tree
from tests.eventlog import LogKnobs, generate
from tests.reference import Reference, ingest, is_approximate

pytestmark = pytest.mark.services

DEFINITIONS = Path(__file__).resolve().parents[2] / "definitions"
CHANGED = "time_to_first_lesson_p50_seconds"  # a percentile: its window is part of its unit
NS = "live"
BATCH = 40


def education(window: str) -> Tree:
    """The education tree with CHANGED's window set; the lateness horizon is
    pinned so that the change moves no other unit's fingerprint."""
    doc: Any = YAML(typ="safe").load((DEFINITIONS / "education.yaml").read_text())
    doc["lateness"] = "28d"
    for metric in doc["inputs"]:
        if metric["name"] == CHANGED:
            metric["window"] = window
    return Tree.model_validate(doc)


def apply_all(applier: BatchApplier, records: list[tuple[int, bytes]], now_ms: int) -> None:
    for start in range(0, len(records), BATCH):
        applier.apply(REPLAY_PARTITION, records[start : start + BATCH], now_ms)


def differences(tree: Tree, store: Store, lines: list[bytes], now_ms: int, at: list[int]) -> dict[str, list[str]]:
    """metric -> '@time: expected x, got y' for every time it differs from the reference."""
    reference = Reference(tree, ingest(lines, tree, now_ms).accepted)
    got = evaluate(store, compile_tree(tree), at)
    out: dict[str, list[str]] = {}
    for t, values in zip(at, got, strict=True):
        for _, metric in tree.metrics():
            want, have = reference.metric_value(metric, t), values[metric.name]
            if want is None or have is None:
                ok = want is None and have is None
            else:
                tol = 0.05 if is_approximate(tree, metric) else 1e-9
                ok = math.isclose(want, have, rel_tol=tol, abs_tol=1e-9)
            if not ok:
                out.setdefault(metric.name, []).append(f"@{t}: expected {want!r}, got {have!r}")
    return out


def keys_of(client: redis.Redis, tag: str) -> list[bytes]:
    return list(client.scan_iter(match=f"{NS}:{{{tag}}}:*", count=1000))


def test_definition_change_backfill_from_file_then_old_state_expires(redis_client: redis.Redis) -> None:
    old, new = education("7d"), education("14d")
    plan_old, plan_new = compile_tree(old), compile_tree(new)
    changed_old = plan_old.readers[CHANGED].unit  # type: ignore[union-attr]
    changed_new = plan_new.readers[CHANGED].unit  # type: ignore[union-attr]
    assert changed_old.fingerprint != changed_new.fingerprint
    kept = {u.fingerprint for u in plan_old.units} & {u.fingerprint for u in plan_new.units}
    assert kept == {u.fingerprint for u in plan_new.units} - {changed_new.fingerprint}

    log = generate(new, 11, LogKnobs(n_events=500, n_users=25))
    lines = log.lines
    records = list(file_records(lines))
    half = len(records) // 2
    at = [*log.midnights(), log.knobs.base_ms + 37 * 86_400_000 + 5 * 3_600_000 + 1]
    retention = Retention(fixed_s=3.0, refresh_s=0.2)
    store = Store(redis_client, namespace=NS)

    # 1. the old definitions run over the first half of the log
    before = BatchApplier(store, [old], refresher=Refresher(store.keys, [plan_old], retention))
    apply_all(before, records[:half], log.now_ms)
    assert keys_of(redis_client, f"education:{changed_old.fingerprint}")

    # 2. the new definitions take over at the same offset
    after = BatchApplier(store, [new], refresher=Refresher(store.keys, [plan_new], retention))
    apply_all(after, records[half:], log.now_ms)
    touch(store, [plan_new], retention)  # the leader's periodic touch
    born = redis_client.hget(store.keys.applied(changed_new), f"born:{REPLAY_PARTITION}")
    assert born is not None and int(born) == half - 1
    wrong = differences(new, store, lines, log.now_ms, at)
    assert set(wrong) == {CHANGED}, f"only the changed metric may miss history before the backfill: {wrong}"

    # 3. backfill from the file: only the new unit receives records, and only its missing ones
    untouched_applied = {
        u.fingerprint: redis_client.hgetall(store.keys.applied(u)) for u in plan_new.units if u != changed_new
    }
    wm_before = redis_client.hgetall(store.keys.watermark("education"))
    ids_before = redis_client.hgetall(store.keys.insert_ids("education"))
    # a backfill stopped part way (here: a file cut short) resumes where it stopped
    cut = backfill_file(redis_client, [new], lines[: half // 2], namespace=NS, partition=REPLAY_PARTITION,
                        batch_size=BATCH, now_ms=lambda: log.now_ms)
    assert cut.records == half // 2
    done = redis_client.hget(store.keys.applied(changed_new), f"bf:{REPLAY_PARTITION}")
    assert done is not None and int(done) == half // 2 - 1
    report = backfill_file(redis_client, [new], lines, namespace=NS, partition=REPLAY_PARTITION, batch_size=BATCH,
                           now_ms=lambda: log.now_ms)
    touch(store, [plan_new], retention)
    assert [m.unit.fingerprint for m in report.units] == [changed_new.fingerprint]
    assert report.records == half
    assert differences(new, store, lines, log.now_ms, at) == {}
    for fp, applied in untouched_applied.items():
        unit = next(u for u in plan_new.units if u.fingerprint == fp)
        assert redis_client.hgetall(store.keys.applied(unit)) == applied, "a live unit was backfilled"
    assert redis_client.hgetall(store.keys.watermark("education")) == wm_before
    assert redis_client.hgetall(store.keys.insert_ids("education")) == ids_before
    assert not list(redis_client.scan_iter(match=scratch_namespace(NS) + ":*")), "scratch verdict state left"

    # 4. a second backfill finds nothing to do and changes nothing
    again = backfill_file(redis_client, [new], lines, namespace=NS, partition=REPLAY_PARTITION, batch_size=BATCH,
                          now_ms=lambda: log.now_ms)
    assert again.units == [] and again.records == 0
    assert differences(new, store, lines, log.now_ms, at) == {}

    # 5. the old fingerprint carries a TTL and disappears; live state stays while touched
    old_tag = f"education:{changed_old.fingerprint}"
    old_keys = keys_of(redis_client, old_tag)
    assert old_keys and all(0 < redis_client.pttl(k) <= 3000 for k in old_keys)

    def old_gone() -> bool:
        touch(store, [plan_new], retention)
        return not keys_of(redis_client, old_tag)

    wait_until(old_gone, timeout=30, what="the old fingerprint's keys to expire", interval=0.2)
    for unit in plan_new.units:
        live = keys_of(redis_client, f"education:{unit.fingerprint}")
        assert live, f"live unit {unit.fingerprint} lost its keys"
        assert all(0 < redis_client.pttl(k) <= 3000 for k in live)
    assert differences(new, store, lines, log.now_ms, at) == {}


def test_refresh_is_rate_limited_and_adds_no_round_trip(redis_client: redis.Redis) -> None:
    """The apply path's PEXPIREs ride in the apply pipeline, at most once per
    key per refresh interval, whatever the number of events or batches."""
    from tests.state.test_engine import _CountingClient

    tree = education("7d")
    plan = compile_tree(tree)
    clock = [1000.0]
    counting = _CountingClient(redis_client)
    store = Store(counting, namespace=NS)
    refresher = Refresher(store.keys, [plan], Retention(refresh_s=60.0), clock=lambda: clock[0])
    applier = BatchApplier(store, [tree], refresher=refresher)
    records = list(file_records(generate(tree, 1, LogKnobs(n_events=400)).lines))
    redis_client.config_resetstat()
    counting.round_trips = 0
    applier.apply(REPLAY_PARTITION, records[:200], 2_000_000_000_000)
    assert counting.round_trips == 2
    first = redis_client.info("commandstats")["cmdstat_pexpire"]["calls"]
    assert first >= len(plan.units)  # at least every unit's applied hash
    existing = set(redis_client.scan_iter(match=f"{NS}:*"))
    applier.apply(REPLAY_PARTITION, records[200:300], 2_000_000_000_000)
    # within the interval: only keys the batch created (a new day's list of
    # insert ids, ...) get their first TTL; no existing key is expired again
    created = set(redis_client.scan_iter(match=f"{NS}:*")) - existing
    given = [k for k in created if redis_client.pttl(k) > 0]
    assert redis_client.info("commandstats")["cmdstat_pexpire"]["calls"] == first + len(given)
    clock[0] += 61
    counting.round_trips = 0
    applier.apply(REPLAY_PARTITION, records[300:], 2_000_000_000_000)
    assert counting.round_trips == 2
    assert redis_client.info("commandstats")["cmdstat_pexpire"]["calls"] > first
    ttl = Retention().ttl_ms(plan)
    keys = [k.decode() for k in redis_client.scan_iter(match=f"{NS}:*")]
    # every key but the percentile's window-end sets (written inside its script) has a TTL...
    assert [k for k in keys if redis_client.pttl(k) == -1 and ":z:" not in k] == []
    # ...and the leader's touch gives those one too
    touch(Store(redis_client, namespace=NS), [plan], Retention())
    assert all(0 < redis_client.pttl(k) <= ttl for k in keys)


def test_on_redis_cluster(redis_cluster: Any) -> None:
    """The same life cycle on a 3-master Redis Cluster: born markers, backfill,
    touch (SCAN of every node) and dropping orphans go to the owning nodes."""
    from streamer.state.inventory import drop, inventory

    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        old, new = education("7d"), education("14d")
        plan_new = compile_tree(new)
        log = generate(new, 21, LogKnobs(n_events=300))
        records = list(file_records(log.lines))
        half = len(records) // 2
        store = Store(client, namespace=NS)
        apply_all(BatchApplier(store, [old]), records[:half], log.now_ms)
        apply_all(BatchApplier(store, [new]), records[half:], log.now_ms)
        at = log.midnights()
        assert set(differences(new, store, log.lines, log.now_ms, at)) == {CHANGED}
        report = backfill_file(client, [new], log.lines, namespace=NS, partition=REPLAY_PARTITION,
                               now_ms=lambda: log.now_ms)
        assert len(report.units) == 1 and report.records == half
        assert differences(new, store, log.lines, log.now_ms, at) == {}

        touched = touch(store, [plan_new], Retention(fixed_s=100.0))
        assert touched.refreshed > 0 and touched.expiring == touched.orphaned > 0
        entries = inventory(store, [plan_new])
        assert all(e.without_ttl == 0 for e in entries)
        orphans = [e for e in entries if e.status == "orphaned"]
        assert len(orphans) == 1 and drop(store, orphans) == len(orphans[0].keys)
        assert [e.status for e in inventory(store, [plan_new])].count("orphaned") == 0
        assert differences(new, store, log.lines, log.now_ms, at) == {}
    finally:
        client.close()


def test_breakdown_state_is_live_and_refreshed(redis_client: redis.Redis) -> None:
    """A breakdown's registry and label sub-units are live state: touch()
    refreshes them, never treats them as orphans, and the apply path gives
    the registry a TTL together with its labels."""
    tree = education("7d")
    plan = compile_tree(tree)
    breakdowns = compile_breakdowns(plan)
    assert breakdowns, "the education example must keep a breakdown for this test"
    store = Store(redis_client, namespace=NS)
    retention = Retention(fixed_s=3600, refresh_s=1)
    applier = BatchApplier(store, [tree], refresher=Refresher(store.keys, [plan], retention))
    log = generate(tree, 11, LogKnobs(n_events=300, n_users=25))
    apply_all(applier, list(file_records(log.lines)), log.now_ms)
    for bd in breakdowns.values():
        registry = store.keys.unit(bd.unit, REGISTRY)
        assert redis_client.hlen(registry) > 0, f"{bd.metric}: nothing admitted"
        assert 0 < redis_client.pttl(registry) <= 3_600_000, f"{bd.metric}: registry without a TTL"
        label_keys = keys_of(redis_client, f"{bd.unit.tree}:{bd.unit.fingerprint}")
        assert any(b":b" in k for k in label_keys)
    report = touch(store, [plan], retention)
    assert report.orphaned == 0
    assert report.refreshed > 0
