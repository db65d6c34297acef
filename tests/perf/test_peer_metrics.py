"""The peers' arithmetic (tests/perf/peer_metrics.py) equals the brute-force
reference on simulated education traffic, with no broker: if a peer's
values then differ from northstar's in the benchmark, the difference is in
how the peer ran, not in what it computes."""

from __future__ import annotations

import math
from collections import defaultdict

import orjson
import pytest

from streamer.bench.workload import DAY_MS, education_workload
from tests.perf.peer_metrics import METRICS, add, metrics, pair_update, project
from tests.reference import reference_values
from tests.trees import example


def peer_values(lines: list[bytes], at_ms: int) -> dict[str, float | None]:
    """What a peer computes when it sees ``lines`` in order."""
    days: dict[tuple[str, int], list[float]] = defaultdict(list)
    pairs: dict[str, list[int]] = {}
    for line in lines:
        event = orjson.loads(line)
        user = str(event["user_id"])
        part = project(event)
        if part is not None:
            key = (user, event["time"] // DAY_MS)
            days[key] = add(days[key], part)
        pair = pair_update(pairs.get(user), event)
        if pair is not None:
            pairs[user] = pair
    return metrics([(u, d, v) for (u, d), v in days.items()], list(pairs.values()), at_ms)


@pytest.mark.parametrize("events", [2_000, 20_000])
def test_peer_metrics_equal_the_reference(events: int) -> None:
    load = education_workload(events, partitions=2, seed=3)
    tree = example("education")
    expected = reference_values(load.lines, tree, load.at_ms, load.at_ms + 60 * DAY_MS)
    got = peer_values(load.lines, load.at_ms)
    assert set(got) == set(METRICS) == set(expected)
    for name in METRICS:
        want, have = expected[name], got[name]
        assert (want is None) == (have is None), name
        if want is not None and have is not None:
            assert math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-9), (name, want, have)
