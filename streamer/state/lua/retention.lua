-- Retention: entities active in the window among those active in the
-- previous one.
--   "e" hash entity -> sparse bucket set (prelude: parse_bits)
--   "a" difference array: entities active in [e - w, e)
--   "r" difference array: entities active in [e - w, e) and [e - 2w, e - w)
-- With C(e) = 1 when the entity has a bucket in [e - w, e): a = sum of C and
-- r = sum of C(e) * C(e - w). A new bucket turns C on over one run lo..hi
-- (cover_add; hi - lo < w), so r gains C(e - w) for e in lo..hi and C(e) for
-- e in lo + w..hi + w: a few bit scans, never the entity's whole history.
-- payload: {"e": [[entity, [b, c, ...]], ...]};  params: {"w": window buckets}
local W = params.w
local E = P .. 'e'
local function retained_before(a, z) range_add('r', a + W, z + W, 1) end
local function retained_after(a, z) range_add('r', a, z, 1) end
for _, op in ipairs(payload.e) do
  local entity, ops = op[1], op[2]
  local set = parse_bits(redis.call('HGET', E, entity))
  local changed = false
  for i = 1, #ops, 2 do
    local new, lo, hi = cover_add(set, ops[i], W)
    changed = changed or new
    if lo ~= nil then
      range_add('a', lo, hi, 1)
      each_covered(set, lo - W, hi - W, W, retained_before)
      each_covered(set, lo + W, hi + W, W, retained_after)
    end
  end
  if changed then redis.call('HSET', E, entity, dump_bits(set)) end
end
return finish()
