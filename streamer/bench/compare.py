"""One worker of several code trees (or settings) back to back on one topic.

    python -m streamer.bench.compare --events 200000 \\
        --variant before=/path/to/older/checkout --variant now=. \\
        --variant default-gc=.:NORTHSTAR_GC_TUNING=false --repeats 2

Each ``--variant LABEL=PYTHONPATH[:NAME=VALUE...]`` runs a real ``northstar
worker`` (imported from that PYTHONPATH, with those extra environment
variables) over the same pre-filled topic (``--partitions``, default 2) and
Redis, timed like ``throughput.py`` from owning partitions to every unit's
applied offset at the end (the units each variant's own code compiles: a
state layout change gives them other fingerprints). ``--tree learning_users`` runs that example tree
over its own simulated model instead of the education tree. Besides the
rate it prints the worker's and Redis's CPU time per record and the worker's
peak RSS
(``/proc/<pid>/stat``, ``INFO cpu``), the broker's (Tansu shares the
cores), and the worker's time per batch in each stage
(``northstar_batch_stage_seconds``): on a shared machine the rate moves with the load, CPU per record
much less. Variants alternate, repeats interleave. ``--commandstats`` adds
Redis's busiest commands of each run (us of its CPU and calls per record).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from streamer.bench import throughput
from streamer.bench.cpu import Probe, per_event
from streamer.bench.run import EDUCATION
from streamer.bench.workload import MODEL_EVENTS_PER_USER, fill_topic, simulated_workload
from streamer.state.store import Store
from streamer.testing.worker import tree_on_topic, units_applied
from streamer.windows.units import Unit
from streamer.worker.metrics import STAGES

_UNITS = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from streamer.testing.worker import load_tree\n"
    "from streamer.windows.units import compile_tree\n"
    "plan = compile_tree(load_tree(Path(sys.argv[1])))\n"
    "print(json.dumps([[u.kind, u.tree, u.fingerprint, u.part] for u in plan.units]))\n"
)


def variant_units(path: str, definitions: Path) -> list[Unit]:
    """The units that the code at ``path`` (a PYTHONPATH) compiles from the tree
    file ``definitions``; the worker of that code applies exactly these."""
    done = subprocess.run(
        [sys.executable, "-c", _UNITS, str(definitions)],
        env={**os.environ, "PYTHONPATH": os.path.abspath(path)}, capture_output=True, text=True, check=False,
        cwd=definitions.parent,  # not the caller's directory, which may hold another ``streamer``
    )
    if done.returncode != 0:
        raise RuntimeError(f"cannot compile the tree with the code at {path!r}: {done.stderr.strip()[-500:]}")
    return [Unit(kind, tree, {}, fingerprint, part=part) for kind, tree, fingerprint, part in json.loads(done.stdout)]


def parse_variant(text: str) -> tuple[str, str, dict[str, str]]:
    label, _, rest = text.partition("=")
    path, *assignments = rest.split(":")
    if not label or not path or any("=" not in a for a in assignments):
        raise argparse.ArgumentTypeError(f"expected LABEL=PYTHONPATH[:NAME=VALUE...], got {text!r}")
    env = dict(a.split("=", 1) for a in assignments)
    return label, str(Path(path).resolve()), env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=2, help="of the topic (a worker has a lane per partition)")
    parser.add_argument("--tree", choices=sorted(MODEL_EVENTS_PER_USER), default="education",
                        help="definitions/<tree>.yaml over its simulated model's events")
    parser.add_argument("--commandstats", action="store_true",
                        help="also print Redis's busiest commands of each run (INFO commandstats)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1 or args.partitions < 1:
        parser.error("--events, --repeats and --partitions must be positive")
    from streamer.testing import RedisServer, TansuBroker

    work = Path(tempfile.mkdtemp(prefix="northstar-compare-"))
    with TansuBroker(work / "tansu") as tansu, RedisServer(work / "redis") as server:
        load = simulated_workload(args.tree, args.events, args.partitions, seed=5)
        topic = "bench-events"
        fill_topic(tansu.bootstrap, topic, load)
        ends = load.end_offsets()
        records = sum(end + 1 for end in ends.values())
        definitions = EDUCATION.with_name(f"{args.tree}.yaml")
        tree_file = tree_on_topic(definitions, topic, work / "defs")
        units = {path: variant_units(path, tree_file) for _, path, _ in args.variant}
        client = redis.Redis.from_url(server.url)
        services = throughput.Services(tansu.bootstrap, server.url, work)
        broker_pid = tansu.pid
        run = 0
        for _ in range(args.repeats):
            for label, path, env in args.variant:
                run += 1
                namespace = f"c{run}"
                store = Store(client, namespace=namespace)
                saved = os.environ.get("PYTHONPATH")
                os.environ["PYTHONPATH"] = path
                try:
                    proc = throughput.worker(
                        services, work / "defs", name=f"{namespace}-{label}", group=f"g-{namespace}",
                        namespace=namespace, session_timeout_ms=3000, env=env,
                    )
                    load_before = os.getloadavg()[0]
                    proc.launch()
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH")
                    else:
                        os.environ["PYTHONPATH"] = saved
                try:
                    proc.wait_ready()
                    if args.commandstats:
                        client.config_resetstat()
                    probe = Probe(client, broker_pid, [proc.pid])
                    before = probe.sample()
                    rss = [0.0]

                    def done(
                        proc: Any = proc, store: Store = store, mine: Any = units[path], rss: list[float] = rss,
                    ) -> bool:
                        rss[0] = max(rss[0], throughput.rss_mib(proc.pid) or 0.0)
                        return units_applied(store, mine, topic, ends)

                    proc.wait_for(done, 3600, "every record applied")
                    after = probe.sample()  # the worker still runs: stopped below
                    seconds = after.at - before.at
                    cpu = per_event(before, after, records)
                    stages = stage_summary(
                        proc.by_label("northstar_batch_stage_seconds_sum", "stage"),
                        proc.by_label("northstar_batch_stage_seconds_count", "stage"),
                        seconds,
                    )
                finally:
                    proc.terminate()
                print(
                    f"{label:>16}: {records / seconds:9,.0f} records/s {seconds:7.2f} s  "
                    f"worker {cpu['client_us_per_event']:5.1f} us/record  "
                    f"redis {cpu['redis_us_per_event']:5.1f} us/record  "
                    f"broker {cpu['broker_us_per_event']:5.1f} us/record  RSS {rss[0]:4.0f} MiB  "
                    f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                if stages:
                    print(f"{'':>16}  {stages}", flush=True)
                if args.commandstats:
                    print(f"{'':>16}  {command_summary(client.info('commandstats'), records)}", flush=True)
                store.delete_namespace()
    return 0


def command_summary(stats: dict[str, Any], records: int, top: int = 8) -> str:
    """Redis's busiest commands of a run, in us of its CPU per record and
    calls per record (``INFO commandstats`` since the run's start). A
    script's own figure includes the commands it calls, which are listed
    too: ``evalsha`` minus them is the Lua and argument decoding."""
    rows = sorted(
        ((name.removeprefix("cmdstat_"), v["usec"] / records, v["calls"] / records) for name, v in stats.items()),
        key=lambda row: -row[1],
    )
    return "redis us/record (calls/record): " + ", ".join(
        f"{name} {us:.2f} ({calls:.3g})" for name, us, calls in rows[:top]
    )


COMMIT_STAGES = STAGES[1:]  # verdicts, aggregate, apply


def stage_summary(sums: dict[str, float], counts: dict[str, float], seconds: float) -> str:
    """One line from a worker's ``northstar_batch_stage_seconds`` (sums and
    counts by stage) over a run of ``seconds``: the mean of each stage per
    batch, and how many lanes were committing on average (the commit stages'
    seconds per second: near the number of partitions, the lanes never
    rested; docs/worker.md, "Which side limits a worker"). Empty when the
    worker exports no stages (older code)."""
    if not any(counts.get(s) for s in STAGES) or seconds <= 0:
        return ""
    means = ", ".join(
        f"{s} {1000 * sums.get(s, 0.0) / counts[s]:.0f}" for s in STAGES if counts.get(s)
    )
    busy = sum(sums.get(s, 0.0) for s in COMMIT_STAGES) / seconds
    return f"ms per batch: {means}; lanes committing {busy:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
