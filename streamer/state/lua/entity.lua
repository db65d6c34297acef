-- Entities with at least n matching events in the window (distinct = n 1),
-- optionally counted as groups with at least m qualifying entities.
-- params.mode picks the state kept in "e" (docs/state.md):
--   "day"    (distinct per day, resolution a whole number of days: an entity
--             key has a single bucket) "e" hash entity -> "1"; HSETNX, and a
--             new key covers (b, b + w]: two difference-array writes
--   "cover"  (distinct, n = 1, no group) "e" hash entity -> sparse bucket set
--             (prelude: parse_bits); a new bucket adds the window ends its
--             nearest neighbours within w do not cover already: two writes
--   "counts" (n > 1 or groups) as below
--   "e"  hash entity -> packed {bucket -> events}
--   "q"  difference array: qualifying entities per window end
--   "eg" hash entity -> "t|group" (latest group value)      [group mode]
--   "gc" hash group -> packed {window end -> qualifying entities} [group mode]
--   "g"  difference array: qualifying groups per window end  [group mode]
-- payload: {"e": [entity, n, b, c, b, c, ..., entity, n, ...] (n values
--           after n; one flat array), "g": [[entity, t, group], ...]}
-- params:  {"w": window buckets, "n": min events, "m": min entities or null,
--           "mode": "day" | "cover" | "counts", "split": 1 or absent}
-- "split" (mode "day" at a resolution of exactly one day): the entities of
-- "e" are the distinct count's, and the script makes each key "entity\31b"
-- itself (a bucket is a day); without it they are "entity\31day" (n = 2).
local W, N = params.w, params.n
local E = P .. 'e'
local ops = payload.e
local count = #ops

if params.mode == 'day' and params.split ~= nil then
  -- resolution 1d: a bucket is its day
  local i = 1
  while i <= count do
    local entity, last = ops[i], i + 1 + ops[i + 1]
    for j = i + 2, last, 2 do
      local b = ops[j]
      if redis.call('HSETNX', E, string.format('%s\31%d', entity, b), 1) == 1 then
        range_add('q', b + 1, b + W, 1)
      end
    end
    i = last + 1
  end
  return finish()
end

if params.mode == 'day' then
  local i = 1
  while i <= count do
    if redis.call('HSETNX', E, ops[i], 1) == 1 then
      local b = ops[i + 2]
      range_add('q', b + 1, b + W, 1)
    end
    i = i + 2 + ops[i + 1]
  end
  return finish()
end

if params.mode == 'cover' then
  local i = 1
  while i <= count do
    local entity, last = ops[i], i + 1 + ops[i + 1]
    local set = parse_bits(redis.call('HGET', E, entity))
    local changed = false
    for j = i + 2, last, 2 do
      local new, lo, hi = cover_add(set, ops[j], W)
      if lo ~= nil then range_add('q', lo, hi, 1) end
      changed = changed or new
    end
    if changed then redis.call('HSET', E, entity, dump_bits(set)) end
    i = last + 1
  end
  return finish()
end

local grouped = params.m ~= nil and params.m ~= cjson.null
local M = params.m
local states = map_cache(P .. 'e')
local gcounts = map_cache(P .. 'gc')
local EG = P .. 'eg'

local function group_delta(g, e, d)
  local m = gcounts.get(g)
  local before = (m[e] or 0) >= M
  m[e] = (m[e] or 0) + d
  gcounts.touch(g)
  local after = m[e] >= M
  if before ~= after then point('g', e, after and 1 or -1) end
end

-- entity -> {buckets = {b, c, ...} from ops, obs = {t, group}}
local touched = {}
local order = {}
local i = 1
while i <= count do
  local entity, n = ops[i], ops[i + 1]
  if touched[entity] == nil then touched[entity] = {}; order[#order + 1] = entity end
  local buckets = {}
  for j = 1, n do buckets[j] = ops[i + 1 + j] end
  touched[entity].buckets = buckets
  i = i + 2 + n
end
if grouped then
  for _, op in ipairs(payload.g) do
    if touched[op[1]] == nil then touched[op[1]] = {}; order[#order + 1] = op[1] end
    touched[op[1]].obs = op
  end
end

for _, entity in ipairs(order) do
  local t = touched[entity]
  local counts = states.get(entity)
  local old = {}
  for b, c in pairs(counts) do old[b] = c end
  local lo, hi = nil, nil
  if t.buckets then
    local ops = t.buckets
    for i = 1, #ops, 2 do
      local b, c = ops[i], ops[i + 1]
      counts[b] = (counts[b] or 0) + c
      if lo == nil or b + 1 < lo then lo = b + 1 end
      if hi == nil or b + W > hi then hi = b + W end
    end
    states.touch(entity)
  end
  local g_old, g_new = nil, nil
  if grouped then
    g_old = latest_value(EG, entity)
    g_new = g_old
    if t.obs then g_old, g_new = latest_update(EG, entity, t.obs[2], t.obs[3]) end
    if g_old ~= g_new then
      -- the entity moves between groups: carry its whole qualification
      local blo, bhi = bounds(counts)
      if blo ~= nil then lo, hi = blo + 1, bhi + W end
    end
  end
  if lo ~= nil then
    local before = qual_vec(old, lo, hi, W, N)
    local after = qual_vec(counts, lo, hi, W, N)
    vec_diff('q', lo, hi, before, after)
    if grouped then
      for e = lo, hi do
        if g_old ~= nil and before[e] == 1 then group_delta(g_old, e, -1) end
        if g_new ~= nil and after[e] == 1 then group_delta(g_new, e, 1) end
      end
    end
  end
end
states.save()
gcounts.save()
return finish()
