"""``northstar bench``: every figure of the benchmark in one run, on the
machine it runs on (issue 7). Sections, in order:

1. ``ceiling``: aiokafka batches + orjson on the benchmark topic; pipelined
   Redis writes from one Python process; the floor: that loop plus the
   least Redis state an exact implementation needs (``ceiling.py``);
2. ``northstar``: one and two ``northstar worker`` processes over the topic
   (``throughput.py``);
3. ``peers``: faust-streaming and Quix Streams on a smaller topic, their
   values checked against northstar's on the same records (``peers.py``);
4. ``freshness``: produce to visible, at half of one worker's rate (``freshness.py``);
5. ``restart``: SIGKILL to processing again, northstar vs the faust peer (``restart.py``);
6. ``evaluation`` and ``memory``: reading cost vs population, bytes per user
   (``evaluation.py``, ``memory.py``).

Broker and Redis are started here (Tansu, two redis-servers: one for the
workers, one that the evaluation and memory sections empty at will) unless an
external broker is named. Progress goes to ``log``; the result is one dict
(``report.py`` adds ratios and targets).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamer.bench import ceiling, evaluation, freshness, memory, peers, restart, throughput
from streamer.bench.cpu import Probe
from streamer.bench.sections import PEER_NAMES, SECTIONS
from streamer.bench.workload import Workload, education_workload, fill_topic
from streamer.spec.model import Tree
from streamer.state.connection import redis_from_url
from streamer.state.evaluate import evaluate
from streamer.state.store import Store
from streamer.testing.worker import load_tree, tree_on_topic
from streamer.windows.units import compile_tree

ROOT = Path(__file__).resolve().parents[2]
EDUCATION = ROOT / "definitions" / "education.yaml"
SUSTAINED_RECORDS = 200_000
"""A one-worker run over fewer records (a few batches of a backlog) gives no
sustained rate to take half of for the freshness section: it runs at 25% of
the ceiling instead."""


@dataclass(frozen=True)
class BenchConfig:
    events: int = 1_000_000
    peer_events: int = 50_000
    partitions: int = 2
    eval_users: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    memory_users: int = 100_000
    freshness_seconds: float = 30.0
    freshness_rate: float | None = None
    evaluate_interval_s: float = 0.5
    session_timeout_ms: int = 3000
    restart_trials: int = 3
    peers: tuple[str, ...] = PEER_NAMES
    peers_on_main: tuple[str, ...] = ("quixstreams",)
    """Peers also run over the main topic (same records as northstar's figure)."""
    sections: tuple[str, ...] = SECTIONS
    kafka: str | None = None
    workdir: Path | None = None
    seed: int = 5
    extrapolate_users: int = 10_000_000
    eval_events_factor: int = 10
    """The evaluation also runs on the middle population with this many
    times the events per user (1: not)."""
    pairs: int = 3
    """Ceiling and one-worker runs, interleaved: the target reads the median
    of their ratios (the first pair is the sections' own runs)."""

    def __post_init__(self) -> None:
        if self.events < 1 or self.peer_events < 1:
            raise ValueError("--events and --peer-events must be positive")
        if self.partitions < 2:
            raise ValueError("the benchmark topic needs 2+ partitions (two workers share it)")
        if not self.eval_users or min(self.eval_users) < 1 or self.memory_users < 1:
            raise ValueError("populations must be positive")
        if self.freshness_seconds <= 5:
            raise ValueError("--freshness-seconds must exceed the 3 s warm-up by a margin (> 5)")
        if self.session_timeout_ms < 1000 or self.restart_trials < 1:
            raise ValueError("--session-timeout-ms must be >= 1000 and --restart-trials >= 1")
        if self.pairs < 1:
            raise ValueError("--pairs must be >= 1")
        if self.eval_events_factor < 1:
            raise ValueError("--eval-events-factor must be >= 1")
        unknown = (set(self.peers) - set(PEER_NAMES)) | (set(self.peers_on_main) - set(self.peers)) | (set(self.sections) - set(SECTIONS))
        if unknown:
            raise ValueError(f"unknown peers or sections: {', '.join(sorted(unknown))}")


@dataclass
class _Context:
    config: BenchConfig
    services: throughput.Services
    client: Any  # the workers' Redis
    scratch: Any  # the Redis that evaluation/memory empty
    log: Callable[[str], None]
    result: dict[str, Any] = field(default_factory=dict)

    def tree_on(self, topic: str) -> tuple[Tree, Path]:
        definitions = self.services.workdir / "definitions" / topic
        return load_tree(tree_on_topic(EDUCATION, topic, definitions)), definitions


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    mem_gib = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        mem_gib = round(int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1]) / 2**20, 1)
    versions: dict[str, str | None] = {}
    for package in ("aiokafka", "faust-streaming", "quixstreams", "redis", "orjson"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gib": mem_gib,
        "platform": platform.platform(), "python": platform.python_version(), "packages": versions,
    }


def _tansu_version() -> str | None:
    from streamer.testing import tansu_binary

    with contextlib.suppress(Exception):
        out = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or None
    return None


@contextlib.contextmanager
def _services(config: BenchConfig, workdir: Path) -> Iterator[tuple[str, str, int | None, str, str]]:
    """(bootstrap, broker description, broker pid or None when external,
    workers' Redis URL, scratch Redis URL)."""
    from streamer.testing import RedisServer, TansuBroker

    with contextlib.ExitStack() as stack:
        broker_pid: int | None = None
        if config.kafka:
            bootstrap, broker = config.kafka, f"external ({config.kafka})"
        else:
            tansu = stack.enter_context(TansuBroker(workdir / "tansu"))
            bootstrap, broker, broker_pid = tansu.bootstrap, _tansu_version() or "tansu", tansu.pid
        main = stack.enter_context(RedisServer(workdir / "redis"))
        scratch = stack.enter_context(RedisServer(workdir / "redis-scratch"))
        yield bootstrap, broker, broker_pid, main.url, scratch.url


def _utc(epoch_s: float) -> str:
    """``epoch_s`` as an ISO 8601 UTC time to the second (when a run ran, for
    the tables in docs/performance.md)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def run_bench(config: BenchConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every section of ``config``; the raw result (see ``report.finish``)."""
    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="northstar-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result: dict[str, Any] = {
        "machine": machine(), "started_utc": _utc(started),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
    with _services(config, workdir) as (bootstrap, broker, broker_pid, main_url, scratch_url):
        client = redis_from_url(main_url)
        scratch = redis_from_url(scratch_url)
        result["machine"]["broker"] = broker
        result["machine"]["redis"] = client.info("server")["redis_version"]
        ctx = _Context(config, throughput.Services(bootstrap, main_url, workdir, broker_pid), client, scratch, log, result)
        main_load = None
        if {"ceiling", "northstar", "freshness"} & set(config.sections) or config.peers_on_main:
            main_load = _main_topic(ctx)
        if "ceiling" in config.sections and main_load is not None:
            _ceiling(ctx, main_load)
        if "northstar" in config.sections and main_load is not None:
            _northstar(ctx, main_load)
            if "ceiling" in config.sections:
                _pairs(ctx, main_load)
        peer_load = None
        if {"peers", "restart"} & set(config.sections):
            peer_load = _peer_topic(ctx)
        if "peers" in config.sections and peer_load is not None:
            _peers(ctx, peer_load, main_load)
        if "freshness" in config.sections and main_load is not None:
            _freshness(ctx, main_load)
        if "restart" in config.sections and peer_load is not None:
            _restart(ctx, peer_load)
        if {"evaluation", "memory"} & set(config.sections):
            _evaluation_memory(ctx)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_seconds"] = round(time.time() - started, 1)
    result["ended_utc"] = _utc(time.time())
    return result


def _main_topic(ctx: _Context) -> tuple[Workload, str, dict[int, int]]:
    c = ctx.config
    ctx.log(f"simulating {c.events:,} education events")
    load = education_workload(c.events, c.partitions, seed=c.seed)
    topic = "bench-events"
    seconds = fill_topic(ctx.services.bootstrap, topic, load)
    ctx.log(f"produced {len(load.lines):,} records to {topic} ({c.partitions} partitions) in {seconds:.1f}s")
    ctx.result["workload"] = {"topic": topic, "records": len(load.lines), "events": load.events,
                              "partitions": c.partitions, "at_ms": load.at_ms,
                              "produce_events_per_s": round(len(load.lines) / seconds, 1)}
    return load, topic, load.end_offsets()


def _ceiling(ctx: _Context, main: tuple[Workload, str, dict[int, int]]) -> None:
    load, topic, _ = main
    ctx.log("ceiling: aiokafka getmany + orjson")
    probe = Probe(ctx.client, ctx.services.broker_pid)  # this process, Redis, the broker
    consumed = _read_whole_topic(ctx, main, probe)
    writes = ceiling.redis_pipeline_rate(ctx.client)
    ctx.log("floor: the ceiling's loop + the least Redis state the tree needs")
    floor = ceiling.floor_rate(ctx.services.bootstrap, topic, len(load.lines), ctx.services.redis_url, probe=probe)
    ctx.result["ceiling"] = {
        "consume": {"records": consumed.records, "seconds": round(consumed.seconds, 3),
                    "events_per_s": round(consumed.events_per_s, 1), "max_records": 10_000,
                    "cpu": consumed.cpu},
        "redis_pipeline": {"command": "HINCRBY", "pipeline": writes.pipeline, "commands": writes.commands,
                           "commands_per_s": round(writes.commands_per_s, 1)},
        "floor": {"records": floor.records, "seconds": round(floor.seconds, 3),
                  "events_per_s": round(floor.events_per_s, 1), "insert_ids": floor.insert_ids,
                  "user_days": floor.user_days, "starts": floor.starts, "cpu": floor.cpu},
    }


def _read_whole_topic(
    ctx: _Context, main: tuple[Workload, str, dict[int, int]], probe: Probe | None = None
) -> ceiling.Consumption:
    """The ceiling's read of the main topic, checked to have reached its end."""
    load, topic, ends = main
    consumed = ceiling.consume_rate(ctx.services.bootstrap, topic, len(load.lines), probe=probe)
    if consumed.last_offsets != ends:
        raise RuntimeError(f"topic end offsets {consumed.last_offsets} differ from the expected {ends}")
    return consumed


def _northstar(ctx: _Context, main: tuple[Workload, str, dict[int, int]]) -> None:
    load, topic, ends = main
    tree, definitions = ctx.tree_on(topic)
    out: dict[str, Any] = {}
    for workers, namespace in ((1, "ns1"), (2, "ns2")):
        ctx.log(f"northstar: {workers} worker(s) over {len(load.lines):,} records")
        run = throughput.run_workers(ctx.services, ctx.client, tree, definitions, topic, ends,
                                     workers=workers, namespace=namespace,
                                     session_timeout_ms=ctx.config.session_timeout_ms)
        out["one_worker" if workers == 1 else "two_workers"] = run.as_dict()
        ctx.log(f"  {run.events_per_s:,.0f} events/s")
        if workers == 1:
            plan = compile_tree(tree)
            store = Store(ctx.client, namespace=namespace)
            _, dedupe = memory.key_bytes(ctx.client, store.keys.tree(tree.tree, "id*"))
            used = int(ctx.client.info("memory")["used_memory"])
            out["state"] = {
                "redis_used_mib_after_one_worker": round(used / 2**20, 1),
                "dedupe_bytes_per_event": round(dedupe / max(load.events, 1), 1),
                "values": evaluate(store, plan, [load.at_ms])[0],
            }
        Store(ctx.client, namespace=namespace).delete_namespace()
    ctx.result["northstar"] = out


def _pairs(ctx: _Context, main: tuple[Workload, str, dict[int, int]]) -> None:
    """``config.pairs - 1`` more (ceiling, one worker) pairs after the sections'
    own, each run right after the other: on a shared machine either rate
    moves by +-5-10% from run to run, so the target reads the median ratio."""
    _, topic, ends = main
    first = (ctx.result["ceiling"]["consume"]["events_per_s"], ctx.result["northstar"]["one_worker"]["events_per_s"])
    rates = [first]
    tree, definitions = ctx.tree_on(topic)
    for index in range(2, ctx.config.pairs + 1):
        ctx.log(f"pair {index} of {ctx.config.pairs}: the ceiling, then one worker")
        consumed = _read_whole_topic(ctx, main)
        namespace = f"pair{index}"
        run = throughput.run_workers(ctx.services, ctx.client, tree, definitions, topic, ends, workers=1,
                                     namespace=namespace, session_timeout_ms=ctx.config.session_timeout_ms)
        Store(ctx.client, namespace=namespace).delete_namespace()
        rates.append((round(consumed.events_per_s, 1), round(run.events_per_s, 1)))
        ctx.log(f"  {consumed.events_per_s:,.0f} / {run.events_per_s:,.0f} events/s")
    ctx.result["pairs"] = [
        {"ceiling_events_per_s": c, "one_worker_events_per_s": w, "ratio": round(w / c, 3) if c else None}
        for c, w in rates
    ]


def _peer_topic(ctx: _Context) -> tuple[Workload, str, dict[int, int]]:
    c = ctx.config
    load = education_workload(c.peer_events, c.partitions, seed=c.seed + 1)
    topic = "bench-peers"
    fill_topic(ctx.services.bootstrap, topic, load)
    ctx.log(f"peer topic: {len(load.lines):,} records")
    return load, topic, load.end_offsets()


def _run_one_peer(
    ctx: _Context, name: str, load: Workload, topic: str, values: dict[str, Any], group: str
) -> dict[str, Any]:
    done = peers.run_peer(name, bootstrap=ctx.services.bootstrap, topic=topic, records=len(load.lines),
                          at_ms=load.at_ms, partitions=load.partitions,
                          workdir=ctx.services.workdir / "peers", group=group,
                          session_timeout_s=ctx.config.session_timeout_ms / 1000)
    differences = peers.compare(values, done["values"])
    ctx.log(f"  {done['events_per_s'] or 0:,.0f} events/s; values equal: {not differences}")
    return {
        "available": True, "records": done["records"], "seconds": round(done["last"] - done["first"], 3),
        "events_per_s": round(done["events_per_s"] or 0.0, 1), "startup_s": done["startup_s"],
        "metrics_checked": sorted(done["values"]), "equal": not differences,
        "differences": differences, "values": done["values"],
    }


def _peers(
    ctx: _Context, peer: tuple[Workload, str, dict[int, int]], main: tuple[Workload, str, dict[int, int]] | None
) -> None:
    load, topic, ends = peer
    tree, definitions = ctx.tree_on(topic)
    ctx.log("peers: northstar (one worker) on the peer topic")
    run = throughput.run_workers(ctx.services, ctx.client, tree, definitions, topic, ends,
                                 workers=1, namespace="peers", session_timeout_ms=ctx.config.session_timeout_ms)
    values = evaluate(Store(ctx.client, namespace="peers"), compile_tree(tree), [load.at_ms])[0]
    out: dict[str, Any] = {"topic": topic, "records": len(load.lines), "at_ms": load.at_ms,
                           "northstar": {**run.as_dict(), "values": values}}
    for name in ctx.config.peers:
        why = peers.unavailable(name)
        if why is not None:
            out[name] = {"available": False, "reason": why}
            ctx.log(f"peers: {name} unavailable: {why}")
            continue
        ctx.log(f"peers: {name}")
        out[name] = _run_one_peer(ctx, name, load, topic, values, f"{name}-bench")
    main_values = ctx.result.get("northstar", {}).get("state", {}).get("values")
    if main is not None and main_values is not None:
        for name in ctx.config.peers_on_main:
            if out.get(name, {}).get("available"):
                ctx.log(f"peers: {name} on the main topic ({len(main[0].lines):,} records)")
                out[f"{name}_main_topic"] = _run_one_peer(ctx, name, main[0], main[1], main_values,
                                                          f"{name}-bench-main")
    Store(ctx.client, namespace="peers").delete_namespace()
    ctx.result["peers"] = out


def _freshness(ctx: _Context, main: tuple[Workload, str, dict[int, int]]) -> None:
    load = main[0]
    one = ctx.result.get("northstar", {}).get("one_worker", {}).get("events_per_s")
    ceiling_rate = ctx.result.get("ceiling", {}).get("consume", {}).get("events_per_s")
    if ctx.config.freshness_rate:
        rate, basis = ctx.config.freshness_rate, "--freshness-rate"
    elif one:
        rate, basis = 0.5 * one, "50% of one worker's events/s"
        records = ctx.result.get("northstar", {}).get("one_worker", {}).get("records", 0)
        if ceiling_rate and rate > 0.25 * ceiling_rate and records < SUSTAINED_RECORDS:
            # a backlog applied in a few batches says nothing about a sustained rate
            rate, basis = 0.25 * ceiling_rate, "25% of the ceiling (one worker's run was too short to be a sustained rate)"
    else:
        rate, basis = 5_000.0, "fixed 5,000/s (northstar section skipped)"
    topic = "bench-fresh"
    _, definitions = ctx.tree_on(topic)
    ctx.log(f"freshness: {rate:,.0f} events/s for {ctx.config.freshness_seconds:.0f}s")
    config = freshness.FreshnessConfig(rate=rate, seconds=ctx.config.freshness_seconds,
                                       evaluate_interval_s=ctx.config.evaluate_interval_s,
                                       session_timeout_ms=ctx.config.session_timeout_ms,
                                       partitions=load.partitions)
    out = freshness.run_freshness(ctx.services, ctx.client, definitions, topic, load.lines[:200_000], config)
    out["rate_basis"] = basis
    ctx.result["freshness"] = out
    Store(ctx.client, namespace="fresh").delete_namespace()


def _restart(ctx: _Context, peer: tuple[Workload, str, dict[int, int]]) -> None:
    load, topic, ends = peer
    tree, definitions = ctx.tree_on(topic)
    c = ctx.config
    ctx.log(f"restart: northstar x{c.restart_trials}")
    out: dict[str, Any] = {"topic": topic, "records": len(load.lines),
                           "northstar": restart.northstar_restart(
                               ctx.services, ctx.client, tree, definitions, topic, ends, load.at_ms,
                               session_timeout_ms=c.session_timeout_ms, trials=c.restart_trials)}
    ctx.log(f"restart: northstar without an instance id x{c.restart_trials}")
    out["northstar_without_instance_id"] = restart.northstar_restart(
        ctx.services, ctx.client, tree, definitions, topic, ends, load.at_ms,
        session_timeout_ms=c.session_timeout_ms, trials=c.restart_trials, instance_id=False)
    why = peers.unavailable("faust")
    if why is None:
        ctx.log("restart: faust peer (changelog recovery)")
        out["faust"] = {"available": True, **restart.faust_restart(
            ctx.services, topic, len(load.lines), load.at_ms, load.partitions,
            session_timeout_ms=c.session_timeout_ms)}
    else:
        out["faust"] = {"available": False, "reason": why}
    for trial in range(c.restart_trials):
        for label in ("", "-anon"):
            Store(ctx.client, namespace=f"restart{label}{trial}").delete_namespace()
    ctx.result["restart"] = out


def _more_events(c: BenchConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The middle population again, with ``eval_events_factor`` times the
    events per user (timed round-robin with the others): what more events
    alone cost the evaluation."""
    users = statistics.median_low(c.eval_users)
    base = next(r for r in rows if r["users"] == users and r["events_factor"] == 1)
    more = next(r for r in rows if r["users"] == users and r["events_factor"] == c.eval_events_factor)
    return {"users": users, "factor": c.eval_events_factor, "row": more,
            "eval_ms_more_events_vs_same_users": round(more["eval_ms_median"] / base["eval_ms_median"], 3)}


def _evaluation_memory(ctx: _Context) -> None:
    c = ctx.config
    tree = evaluation.load_tree("education")
    plan = compile_tree(tree)
    breakdown: dict[str, Any] = {}

    def after_fill(users: int, namespace: str) -> None:
        if users == c.memory_users and not breakdown:
            breakdown.update(memory.unit_breakdown(ctx.scratch, plan, users, namespace))

    populations = sorted(set(c.eval_users) | ({c.memory_users} if "memory" in c.sections else set()))
    more = [(statistics.median_low(c.eval_users), c.eval_events_factor)] if c.eval_events_factor > 1 else []
    ctx.log(f"evaluation: populations {', '.join(f'{u:,}' for u in populations)}"
            + "".join(f", {u:,} users with {f}x the events per user" for u, f in more)
            + "; timed round-robin")
    timed = evaluation.measure(ctx.scratch, tree, [*populations, *more], repeats=100, after_fill=after_fill)
    rows = timed[: len(populations)]
    ctx.result["evaluation"] = {
        "rows": rows, "times_per_evaluation": 2, "extrapolate_users": c.extrapolate_users,
        "eval_ms_fit": evaluation.extrapolate(rows, "eval_ms_median", c.extrapolate_users, "log"),
        "eval_ms_largest_vs_smallest": round(rows[-1]["eval_ms_median"] / rows[0]["eval_ms_median"], 3)
        if len(rows) > 1 else None,
        "redis_mib_fit": evaluation.extrapolate(rows, "redis_used_mib", c.extrapolate_users),
    }
    if more:
        ctx.result["evaluation"]["more_events"] = _more_events(c, timed)
    if "memory" in c.sections:
        ctx.log(f"memory: exact vs HyperLogLog distinct, {c.memory_users:,} users")
        ctx.result["memory"] = {
            "per_unit": breakdown,
            "distinct": memory.distinct_memory(ctx.scratch, tree, c.memory_users),
        }
    evaluation.empty(ctx.scratch)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run_bench(BenchConfig(), lambda m: print(m, file=sys.stderr)), indent=1))
