-- Retention: entities active in the window among those active in the
-- previous one.
--   "e" hash entity -> sparse bucket set (prelude: parse_bits)
--   "a" difference array: entities active in [e - w, e)
--   "r" difference array: entities active in [e - w, e) and [e - 2w, e - w)
--   "d" difference array (params.days, at a resolution of one day): distinct
--       (entity, day) in [e - w, e): a new bucket b adds 1 over (b, b + w]
-- With C(e) = 1 when the entity has a bucket in [e - w, e): a = sum of C and
-- r = sum of C(e) * C(e - w). A new bucket turns C on over one run lo..hi
-- (cover_add; hi - lo < w), so r gains C(e - w) for e in lo..hi and C(e) for
-- e in lo + w..hi + w: a few bit scans, never the entity's whole history.
-- payload: {"e": [entity, n, b, c, ..., entity, n, ...]} (n values after n;
-- one flat array);  params: {"w": window buckets, "days": 1 or absent}
local W = params.w
local DAYS = params.days ~= nil
local E = P .. 'e'
local function retained_before(a, z) range_add('r', a + W, z + W, 1) end
local function retained_after(a, z) range_add('r', a, z, 1) end
local ops = payload.e
local i, count = 1, #ops
while i <= count do
  local entity, last = ops[i], i + 1 + ops[i + 1]
  local set = parse_bits(redis.call('HGET', E, entity))
  local changed = false
  for j = i + 2, last, 2 do
    local b = ops[j]
    local new, lo, hi = cover_add(set, b, W)
    changed = changed or new
    if new and DAYS then range_add('d', b + 1, b + W, 1) end
    if lo ~= nil then
      range_add('a', lo, hi, 1)
      each_covered(set, lo - W, hi - W, W, retained_before)
      each_covered(set, lo + W, hi + W, W, retained_after)
    end
  end
  if changed then redis.call('HSET', E, entity, dump_bits(set)) end
  i = last + 1
end
return finish()
