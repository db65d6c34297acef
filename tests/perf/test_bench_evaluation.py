"""The evaluation benchmark's helpers: emptying Redis in the background and
waiting for it, and the fit that predicts a population not run."""

from __future__ import annotations

import pytest
import redis

from streamer.bench.evaluation import empty, extrapolate

pytestmark = pytest.mark.services


def test_empty_waits_until_everything_is_freed(redis_client: redis.Redis) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for i in range(200):
        pipe.hset(f"h{i}", mapping={str(j): "x" * 20 for j in range(200)})
    pipe.execute()
    assert redis_client.dbsize() == 200
    empty(redis_client)
    assert redis_client.dbsize() == 0
    assert int(redis_client.info("memory")["lazyfree_pending_objects"]) == 0


def test_extrapolate_fits_a_line_in_log_users() -> None:
    rows = [{"users": 10**k, "ms": 1.0 + 0.5 * k} for k in (4, 5, 6)]
    fit = extrapolate(rows, "ms", 10**7, scale="log")
    assert fit is not None and fit["slope"] == pytest.approx(0.5) and fit["predicted"] == pytest.approx(4.5)
    assert extrapolate(rows[:1], "ms", 10**7) is None
    with pytest.raises(ValueError):
        extrapolate(rows, "ms", 10**7, scale="cubic")
