"""Pre-aggregation per unit, as the engine runs it: CPU per event.

    python -m streamer.bench.aggregate [--events 200000] [--batch 10000] [--rounds 5]

Decodes simulated education events once, then, per batch, selects each
unit's events by name (``_Reads``, as ``BatchApplier``) and builds every
unit's payload with one memo per batch (units over the same events share
their counts). Each round times every unit; each figure is the best round
(CPU time of this thread) per event of the whole batch. No Redis, no
broker: the Python between the verdicts and the apply, which
``streamer.bench.profile`` times with the round trips around it. Prints
figures, never fails on them (docs/performance.md, proposal 23).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from streamer.bench.evaluation import load_tree
from streamer.bench.workload import simulated_workload
from streamer.engine import _Reads, _TreeState
from streamer.events.decode import Decoder
from streamer.events.types import Event
from streamer.windows.aggregate import Memo
from streamer.windows.units import compile_tree


def measure(events: int, batch: int, rounds: int, tree: str = "education") -> dict[str, float]:
    """us of CPU per event: ``select`` (each unit's events by name) and one
    entry per unit (``kind fingerprint``), best of ``rounds``."""
    plan = compile_tree(load_tree(tree))
    state = _TreeState(plan)
    lines = simulated_workload("education", events).lines[:events]
    decoded = Decoder(plan.tree.source).decode_batch(lines, 2**62)
    evs = [e for e in decoded if type(e) is Event]
    batches = [list(enumerate(evs[i : i + batch], i)) for i in range(0, len(evs), batch)]
    best: dict[str, float] = {}
    for _ in range(rounds):
        spent: dict[str, float] = defaultdict(float)
        for pairs in batches:
            reads = _Reads(pairs)
            memo: Memo = {}
            started = time.thread_time()
            selected = [reads.bare(reads.select(agg.names)) for agg in state.aggregators]
            spent["select"] += time.thread_time() - started
            for agg, bare in zip(state.aggregators, selected, strict=True):
                started = time.thread_time()
                agg.payload(bare, memo)
                spent[f"{agg.unit.kind} {agg.unit.fingerprint[:10]}"] += time.thread_time() - started
        for name, seconds in spent.items():
            best[name] = min(best.get(name, seconds), seconds)
    return {name: seconds / max(1, len(evs)) * 1e6 for name, seconds in best.items()}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.bench.aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=_positive, default=200_000)
    parser.add_argument("--batch", type=_positive, default=10_000)
    parser.add_argument("--rounds", type=_positive, default=5)
    args = parser.parse_args(argv)
    figures = measure(args.events, args.batch, args.rounds)
    print(f"{args.events:,} simulated education events, batches of {args.batch:,}, best of {args.rounds} rounds")
    for name, us in figures.items():
        print(f"  {name:<24} {us:6.3f} us/event")
    print(f"  {'total':<24} {sum(figures.values()):6.3f} us/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
