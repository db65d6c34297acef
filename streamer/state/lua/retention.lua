-- Retention: entities active in the window among those active in the
-- previous one.
--   "e" hash entity -> packed {bucket -> events}
--   "a" difference array: entities active in [e - w, e)
--   "r" difference array: entities active in [e - w, e) and [e - 2w, e - w)
-- payload: {"e": [[entity, [b, c, ...]], ...]};  params: {"w": window buckets}
local W = params.w
local states = map_cache(P .. 'e')
for _, op in ipairs(payload.e) do
  local entity, ops = op[1], op[2]
  local counts = states.get(entity)
  local old = {}
  for b, c in pairs(counts) do old[b] = c end
  local lo, hi = nil, nil
  for i = 1, #ops, 2 do
    local b = ops[i]
    counts[b] = (counts[b] or 0) + ops[i + 1]
    if lo == nil or b + 1 < lo then lo = b + 1 end
    if hi == nil or b + 2 * W > hi then hi = b + 2 * W end
  end
  states.touch(entity)
  local a0 = qual_vec(old, lo - W, hi, W, 1)
  local a1 = qual_vec(counts, lo - W, hi, W, 1)
  vec_diff('a', lo, hi, a0, a1)
  for e = lo, hi do
    point('r', e, a1[e] * a1[e - W] - a0[e] * a0[e - W])
  end
end
states.save()
return finish()
