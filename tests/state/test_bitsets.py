"""The sparse bucket sets of the Lua prelude (parse_bits, bits_prev, bits_next,
cover_add, each_covered) against brute force in Python, run inside Redis on
random sets that cross 32-bucket words."""

from __future__ import annotations

import random

import orjson
import pytest
import redis

from streamer.state.scripts import apply_source
from streamer.state.store import pack

pytestmark = pytest.mark.services

# Runs after the prelude (fake unit: no applied offset yet, empty payload).
CHECK = """
local cases = cjson.decode(ARGV[6])
local out = {}
for i, c in ipairs(cases) do
  local t = {}
  for _, b in ipairs(c.set) do bits_set(t, b) end
  t = parse_bits(dump_bits(t))  -- round trip through the stored form
  local r = {}
  r.has = bits_has(t, c.b)
  r.prev = bits_prev(t, c.b - 1, c.b - c.w) or cjson.null
  r.next = bits_next(t, c.b + 1, c.b + c.w) or cjson.null
  local new, lo, hi = cover_add(t, c.b, c.w)
  r.new, r.lo, r.hi = new, lo or cjson.null, hi or cjson.null
  local runs = {}
  each_covered(t, c.x, c.y, c.w, function(a, z) runs[#runs + 1] = {a, z} end)
  r.runs = runs
  out[i] = r
end
return cjson.encode(out)
"""


def _covered(buckets: set[int], e: int, w: int) -> bool:
    return any(e - w <= b < e for b in buckets)


def _runs(buckets: set[int], x: int, y: int, w: int) -> list[int]:
    return [e for e in range(x, y + 1) if _covered(buckets, e, w)]


def test_bucket_sets_match_brute_force(redis_client: redis.Redis) -> None:
    rng = random.Random(17)
    cases = []
    for _ in range(400):
        base = rng.choice([0, 32 * 600, 32 * 600 + 17, 19_786])
        spread = rng.choice([8, 40, 200])
        buckets = sorted({base + rng.randrange(spread) for _ in range(rng.randrange(0, 12))})
        b = base + rng.randrange(-5, spread + 5)
        w = rng.choice([1, 2, 7, 31, 32, 33, 90])
        x = b + rng.randrange(-40, 40)
        cases.append({"set": buckets, "b": b, "w": w, "x": x, "y": x + rng.randrange(0, 80)})
    script = apply_source("sum").split("-- Windowed count or sum")[0] + CHECK
    raw = redis_client.eval(script, 1, "bits:{t}:applied", "0", "-1", "0", pack({}), "{}", orjson.dumps(cases))
    results = orjson.loads(raw)
    for case, got in zip(cases, results, strict=True):
        s, b, w = set(case["set"]), case["b"], case["w"]
        below = [p for p in s if b - w <= p < b]
        above = [p for p in s if b < p <= b + w]
        assert got["has"] == (b in s), case
        assert got["prev"] == (max(below) if below else None), case
        assert got["next"] == (min(above) if above else None), case
        assert got["new"] == (b not in s), case
        gained = [e for e in range(b + 1, b + w + 1) if b not in s and not _covered(s, e, w)]
        assert (got["lo"], got["hi"]) == ((gained[0], gained[-1]) if gained else (None, None)), case
        assert gained == list(range(gained[0], gained[-1] + 1)) if gained else True  # one run
        after = s | {b}
        runs = [e for a, z in (got["runs"] or []) for e in range(a, z + 1)]  # {} when empty
        assert runs == _runs(after, case["x"], case["y"], w), case
