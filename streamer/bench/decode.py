"""Decoding throughput: raw Amplitude events to ``Event``, against
``orjson.loads`` alone (what no decoder can beat).

    python -m streamer.bench.decode [--events 200000] [--rounds 7]

Four variants over the same events in batches of 1,000 (as ``getmany``
returns them): ``orjson.loads`` only; ``orjson.loads`` and an ``Event`` with
no checks; ``Decoder.decode`` per event; ``Decoder.decode_batch``. Rounds
interleave the variants so that load from other processes hits them alike,
and each keeps its best round (CPU time of this thread). Prints figures,
never fails on them (docs/events.md).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import orjson

from streamer.events.decode import Decoder
from streamer.events.types import Event
from streamer.spec.model import Source

NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z


def amplitude_events(n: int, seed: int = 7) -> list[bytes]:
    """``n`` Amplitude-shaped events of the last day before ``NOW``."""
    rng = random.Random(seed)
    return [
        orjson.dumps(
            {
                "event_type": rng.choice(["lesson_completed", "lesson_started", "learning_viewed"]),
                "user_id": f"user-{rng.randrange(100_000)}",
                "device_id": f"dev-{rng.randrange(10**6):06d}",
                "time": NOW - rng.randrange(86_400_000),
                "insert_id": f"{rng.getrandbits(128):032x}",
                "event_properties": {
                    "minutes": round(rng.random() * 30, 2),
                    "plan": rng.choice(["free", "pro"]),
                    "lesson_id": f"l-{rng.randrange(500)}",
                },
                "user_properties": {"country": rng.choice(["DE", "FR", "US"])},
                "groups": {"org": f"org-{rng.randrange(100)}"},
            }
        )
        for _ in range(n)
    ]


def variants(raws: list[bytes]) -> dict[str, Callable[[], int]]:
    """Each variant decodes every batch and returns how many events it made;
    each keeps one batch's results alive, as a worker does."""
    batches = [raws[i : i + 1000] for i in range(0, len(raws), 1000)]
    decoder = Decoder(Source())

    def loads_only() -> int:
        loads = orjson.loads
        return sum(len([loads(raw) for raw in batch]) for batch in batches)

    def plain_event() -> int:
        loads = orjson.loads
        return sum(
            len([
                Event(o["event_type"], o["user_id"], o["time"], o["insert_id"],
                      o["event_properties"], o["groups"], o["user_properties"])
                for o in map(loads, batch)
            ])
            for batch in batches
        )  # fmt: skip

    def decode_each() -> int:
        decode = decoder.decode
        return sum(sum(type(decode(raw, NOW)) is Event for raw in batch) for batch in batches)

    def decode_batch() -> int:
        return sum(sum(type(out) is Event for out in decoder.decode_batch(batch, NOW)) for batch in batches)

    return {
        "orjson.loads only": loads_only,
        "orjson.loads + Event(...), no checks": plain_event,
        "Decoder.decode": decode_each,
        "Decoder.decode_batch": decode_batch,
    }


def measure(raws: list[bytes], rounds: int) -> dict[str, float]:
    """Events per second of CPU time of each variant, best of ``rounds``."""
    runs = variants(raws)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for label, run in runs.items():
            started = time.thread_time()
            made = run()
            if made != len(raws):
                raise RuntimeError(f"{label} made {made} events of {len(raws)}")
            best[label] = min(best[label], time.thread_time() - started)
    return {label: len(raws) / max(seconds, 1e-9) for label, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be at least 1")
    raws = amplitude_events(args.events)
    figures = measure(raws, args.rounds)
    floor = figures["orjson.loads only"]
    size = sum(map(len, raws)) / len(raws)
    print(f"{len(raws):,} Amplitude events, {size:.0f} bytes on average, batches of 1000, "
          f"best of {args.rounds} (CPU time)")
    for label, value in figures.items():
        print(f"  {label:40s} {value / 1e3:6.0f}k events/s  ({value / floor:.2f}x orjson.loads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
