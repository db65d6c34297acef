"""False-alarm and detection behaviour of the divergence alert, by simulation.

For each scenario and seed: simulate 42 days of the education product (steady
for 28 days, then the scenario's drift), replay it, and step the evaluator
every 6 simulated hours over days 21-42. Counts how often the divergence
alert fired and how often a guardrail was judged degraded, and for Goodhart
how long after the drift began it fired.

    python -m streamer.bench.false_alarms [--seeds 20] [--redis URL]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import orjson

from streamer.bench.evaluation import load_tree
from streamer.bench.redis_target import bench_redis
from streamer.evaluate.evaluator import TreeEvaluator
from streamer.replay import replay
from streamer.sim.models import simulate
from streamer.sim.scenarios import SCENARIOS
from streamer.state.store import Store

DAY = 86_400_000
HOUR = 3_600_000
START = 20_000 * DAY
DRIFT_FROM = START + 28 * DAY


def run(client: Any, scenario: str, seed: int) -> dict[str, Any]:
    tree = load_tree("education")
    lines = [orjson.dumps(e) for e in simulate("education", START, 42, SCENARIOS[scenario],
                                               drift_from_ms=DRIFT_FROM, seed=seed)]
    replay(lines, [tree], client, at_ms=[START], now_ms=START + 60 * DAY, namespace="fa")
    evaluator = TreeEvaluator(Store(client, namespace="fa"), tree)
    fired: list[int] = []
    degraded_evals = 0
    evals = 0
    for hour in range(21 * 24, 42 * 24, 6):
        result = evaluator.evaluate(START + hour * HOUR)
        if result is None:
            continue
        snapshot, events = result
        evals += 1
        degraded_evals += bool(snapshot["divergence"]["degraded"])
        fired += [hour for e in events if e["state"] == "firing"]
    return {"fired": fired, "degraded_share": degraded_evals / max(evals, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--redis", help="Redis URL (default: start a local redis-server)")
    args = parser.parse_args(argv)
    with bench_redis(args.redis) as client:
        print(f"{'scenario':<10} {'runs':>5} {'runs firing':>12} {'incidents':>10} {'guard degraded':>15} "
              f"{'delay (days) median/max':>24}")
        for scenario in ("noisy", "healthy", "goodhart"):
            results = [run(client, scenario, seed) for seed in range(1, args.seeds + 1)]
            firing = [r for r in results if r["fired"]]
            incidents = sum(len(r["fired"]) for r in results)
            degraded = statistics.mean(r["degraded_share"] for r in results)
            delays = [(START + r["fired"][0] * HOUR - DRIFT_FROM) / DAY for r in firing]
            delay = f"{statistics.median(delays):.2f} / {max(delays):.2f}" if delays else "-"
            print(f"{scenario:<10} {len(results):>5} {len(firing):>12} {incidents:>10} {degraded:>14.1%} {delay:>24}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
