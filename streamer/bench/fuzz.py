"""``python -m streamer.bench.fuzz``: fuzz event decoding and the definitions
loader; count inputs, crashes and rejections by reason (docs/reliability.md).

    python -m streamer.bench.fuzz --target decode --seconds 600
    python -m streamer.bench.fuzz --target definitions --inputs 20000 --json
    python -m streamer.bench.fuzz --target all --seconds 10 --engines hypothesis mutate

Engines: ``hypothesis`` (structured generation), ``mutate`` (random edits of
seeds: the malformed corpus, simulated events, definitions/*.yaml) and
``atheris`` (coverage guided, when the optional ``atheris`` package is
installed: ``pip install northstar-streamer[fuzz]``; it runs in a child
process, as libFuzzer owns the process it runs in). The budget is split
between the engines chosen. Exit code 1 when anything crashed, 0 otherwise,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from streamer.bench.fuzz_core import Budget, Tally

TARGETS = ("decode", "definitions")
ENGINES = ("hypothesis", "mutate", "atheris")
SHARES = {"hypothesis": 0.3, "mutate": 0.5, "atheris": 0.2}


def have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


def run_target(target: str, budget: Budget, engines: list[str], seed: int,
               artifacts: Path | None, log: Any) -> Tally:
    tally = Tally(target, artifacts=artifacts)
    total = sum(SHARES[e] for e in engines)
    for engine in engines:
        share = budget.share(SHARES[engine] / total, tally)
        started = time.monotonic()
        log(f"{target}: {engine} ...")
        if target == "decode":
            _decode(engine, share, tally, seed)
        else:
            _definitions(engine, share, tally, seed)
        tally.seconds[engine] = tally.seconds.get(engine, 0.0) + time.monotonic() - started
        log(f"{target}: {engine}: {tally.inputs[engine]:,} inputs, {tally.crash_count} crashes so far")
    return tally


_kept: list[bytes] = []


def _decode(engine: str, budget: Budget, tally: Tally, seed: int) -> None:
    from streamer.bench import fuzz_decode

    if engine == "hypothesis":
        fuzz_decode.run_hypothesis(budget, tally, seed, _kept)
    elif engine == "mutate":
        seeds = fuzz_decode.corpus_seeds() + fuzz_decode.simulated_seeds() + _kept[:2000]
        fuzz_decode.run_mutate(budget, tally, seeds, seed)
    else:
        _atheris("decode", budget, tally, seed)


def _definitions(engine: str, budget: Budget, tally: Tally, seed: int) -> None:
    from streamer.bench import fuzz_definitions

    if engine == "hypothesis":
        fuzz_definitions.run_hypothesis(budget, tally, seed)
    elif engine == "mutate":
        fuzz_definitions.run_mutate(budget, tally, seed)
    else:
        _atheris("definitions", budget, tally, seed)


def _atheris(target: str, budget: Budget, tally: Tally, seed: int) -> None:
    from streamer.bench.fuzz_atheris import run_child

    run_child(target, budget, tally, seed)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m streamer.bench.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--seconds", type=float, help="time budget per target (default 10)")
    group.add_argument("--inputs", type=int, help="input budget per target")
    p.add_argument("--engines", nargs="+", choices=ENGINES,
                   help="engines to run (default: hypothesis and mutate, plus atheris when installed)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--artifacts", type=Path, help="write each distinct crashing input here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if (args.seconds is not None and args.seconds <= 0) or (args.inputs is not None and args.inputs <= 0):
        parser.print_usage(sys.stderr)
        sys.stderr.write("fuzz: error: --seconds and --inputs must be positive\n")
        return 2
    engines = args.engines or ["hypothesis", "mutate", *(["atheris"] if have_atheris() else [])]
    if "atheris" in engines and not have_atheris():
        sys.stderr.write("fuzz: error: atheris is not installed (pip install atheris)\n")
        return 2
    seconds = args.seconds if args.seconds is not None or args.inputs is not None else 10.0

    def log(message: str) -> None:
        sys.stderr.write(f"fuzz: {message}\n")
        sys.stderr.flush()

    targets = list(TARGETS) if args.target == "all" else [args.target]
    results = []
    load_start = os.getloadavg()[0]
    for target in targets:
        budget = Budget(seconds, args.inputs)
        results.append(run_target(target, budget, engines, args.seed, args.artifacts, log).as_dict())
    summary = {"engines": engines, "seed": args.seed, "budget": {"seconds": seconds, "inputs": args.inputs},
               "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)], "targets": results}
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_summary(summary) + "\n")
    return 1 if any(r["crashes"] for r in results) else 0


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for r in summary["targets"]:
        by_engine = ", ".join(f"{e} {n:,} in {r['seconds_by_engine'].get(e, 0)}s"
                              for e, n in r["inputs_by_engine"].items())
        lines.append(f"{r['target']}: {r['inputs']:,} inputs ({by_engine}); crashes: {r['crashes']}")
        for c in r["crash_examples"]:
            lines.append(f"  CRASH [{c['engine']}] {c['kind']}: {c['what']}\n    input: {c['input'][:120]!r}")
        outcomes = ", ".join(f"{k} {v:,}" for k, v in r["outcomes"].items())
        lines.append(f"  outcomes: {outcomes}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
