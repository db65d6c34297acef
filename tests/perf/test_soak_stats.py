"""Soak verdicts (streamer.bench.soak_stats): the least-squares slope, flat
vs growing with the stated tolerance, errors are any non-zero count."""

from __future__ import annotations

import random

import numpy as np

from streamer.bench.soak_stats import Series, judge, slope, table

TIMES = [float(t) for t in range(0, 1800, 30)]


def test_slope_equals_numpy_least_squares() -> None:
    rng = random.Random(3)
    for _ in range(20):
        values = [rng.uniform(-100, 100) for _ in TIMES]
        assert abs(slope(TIMES, values) - np.polyfit(TIMES, values, 1)[0]) < 1e-9


def test_noise_around_a_plateau_is_flat() -> None:
    rng = random.Random(1)
    values = [100 + (t < 300) * (t / 3) - 100 + rng.uniform(-2, 2) for t in TIMES]  # warm-up, then flat
    verdict = judge(Series("rss", "MiB", floor=1), TIMES, values)
    assert verdict.verdict == "flat", verdict


def test_a_steady_leak_is_growing() -> None:
    # +0.5 MiB a minute on 100 MiB: 7.5 MiB over the second half, more than 5 %
    values = [100 + t / 120 for t in TIMES]
    verdict = judge(Series("rss", "MiB", floor=1), TIMES, values)
    assert verdict.verdict == "growing"
    assert verdict.growth is not None and abs(verdict.growth - (TIMES[-1] - TIMES[30]) / 120) < 1e-6
    assert verdict.per_hour is not None and abs(verdict.per_hour - 30) < 1e-6


def test_the_floor_absorbs_small_absolute_growth() -> None:
    values = [t / 3600 for t in TIMES]  # lag creeping by 0.25 events over the second half
    assert judge(Series("lag", "events", floor=100), TIMES, values).verdict == "flat"
    assert judge(Series("lag", "events", floor=0), TIMES, values).verdict == "growing"


def test_any_error_is_reported() -> None:
    errors = Series("dead_letters", "count", "errors")
    assert judge(errors, TIMES, [0.0] * len(TIMES)).verdict == "zero"
    assert judge(errors, TIMES, [0.0] * (len(TIMES) - 1) + [1.0]).verdict == "errors"
    assert judge(errors, TIMES, [None] * len(TIMES)).verdict == "no data"


def test_table_keeps_the_last_row() -> None:
    rows = [{"t_s": t, "rss": 1.5} for t in TIMES]
    text = table([Series("rss", "MiB")], rows, every=7)
    lines = text.splitlines()
    assert lines[0].split() == ["t_s", "rss", "(MiB)"]
    assert lines[-1].split()[0] == f"{TIMES[-1]:.0f}"
    assert len(lines) == 1 + len(range(0, len(TIMES), 7)) + (1 if (len(TIMES) - 1) % 7 else 0)


def test_population_grows_with_the_rate() -> None:
    from streamer.bench.soak import copies_for, user_of

    assert copies_for(100.0, 60.0, 6000) == 1  # the pool is enough
    assert copies_for(12_000.0, 60.0, 6000) == 120
    pool, copies = 4, 3
    ids = [user_of("u", sent, pool, copies) for sent in range(0, 4 * pool, pool)]
    assert ids == ["u", "u~1", "u~2", "u"]  # one copy per pass over the pool, then round again
    assert {user_of("u", sent, pool, copies) for sent in range(pool)} == {"u"}
