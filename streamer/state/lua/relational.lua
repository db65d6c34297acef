-- Items created by one user and consumed by others (Weekly Learning Users).
-- Layout 3 (RELATIONAL_VERSION, docs/state.md section 1.2):
--   "own" hash item -> "t|user"  earliest created_by event (ties: smallest user)
--   "pv"  hash item\31viewer -> bucket set "word:mask,..." of the viewer's views
--   "vc"  hash item -> "base:c,c,..." viewers active at window ends base,
--         base+1, ... (the owner included; consumers = vc - owner's coverage)
--   "oq"  hash user -> packed {window end -> broadcast items owned}
--   "ug"  hash user -> "t|group" latest group                 [group mode]
--   "gq"  hash group -> packed {window end -> owners}          [group mode]
--   difference arrays: "i" broadcast items, "n" consumptions, "o" owners,
--   "g" groups with at least gm owners
-- A view adds its bucket to the viewer's set (cover_add): the window ends it
-- newly covers get +1 in the item's counts; only the window ends that changed
-- are re-qualified, unless the item's owner changed (then all of them).
-- payload: {"s": [[item, t, user]], "v": [[item, viewer, [b, ...]]], "g": [[user, t, group]]}
-- params:  {"w": window buckets, "m": min consumers, "gm": min owners or null}
local W, M = params.w, params.m
local grouped = params.gm ~= nil and params.gm ~= cjson.null
local GM = params.gm
local OWN, UG, PV, VC = P .. 'own', P .. 'ug', P .. 'pv', P .. 'vc'
local oqs = map_cache(P .. 'oq')
local gqs = map_cache(P .. 'gq')

local function group_delta(g, e, d)
  local m = gqs.get(g)
  local before = (m[e] or 0) >= GM
  m[e] = (m[e] or 0) + d
  gqs.touch(g)
  local after = m[e] >= GM
  if before ~= after then point('g', e, after and 1 or -1) end
end
local function owner_delta(user, e, d)
  local m = oqs.get(user)
  local before = (m[e] or 0) > 0
  m[e] = (m[e] or 0) + d
  oqs.touch(user)
  local after = m[e] > 0
  if before ~= after then
    local s = after and 1 or -1
    point('o', e, s)
    if grouped then
      local g = latest_value(UG, user)
      if g ~= nil then group_delta(g, e, s) end
    end
  end
end
-- 1 when a bucket of the set covers window end e, else 0
local function covers(bits, e)
  if bits == nil or next(bits) == nil then return 0 end
  if bits_prev(bits, e - 1, e - W) ~= nil then return 1 end
  return 0
end
local function pv_bits(item, user)
  return parse_bits(redis.call('HGET', PV, item .. '\31' .. user))
end

-- counts "base:c,c,..." as base and an array (index e - base + 1)
local function parse_counts(s)
  local arr = {}
  if not s then return nil, arr end
  local base, rest = string.match(s, '^(-?%d+):(.*)$')
  local n = 0
  for x in string.gmatch(rest, '[^,]+') do n = n + 1; arr[n] = tonumber(x) end
  return tonumber(base), arr
end
local function dump_counts(base, arr, n)
  local a, z = 1, n
  while a <= z and arr[a] == 0 do a = a + 1 end
  while z >= a and arr[z] == 0 do z = z - 1 end
  if a > z then return nil end
  return string.format('%d', base + a - 1) .. ':' .. table.concat(arr, ',', a, z)
end

-- group the batch by item
local items, order = {}, {}
local function item_ops(item)
  local it = items[item]
  if it == nil then it = {views = {}}; items[item] = it; order[#order + 1] = item end
  return it
end
for _, op in ipairs(payload.s) do item_ops(op[1]).share = op end
for _, op in ipairs(payload.v) do local it = item_ops(op[1]); it.views[#it.views + 1] = op end

for _, item in ipairs(order) do
  local it = items[item]
  -- the owner before and after this batch
  local t_old, own_old = nil, nil
  local rec = redis.call('HGET', OWN, item)
  if rec then
    local t, u = string.match(rec, '^([^|]*)|(.*)$')
    t_old, own_old = tonumber(t), u
  end
  local own_new = own_old
  if it.share then
    local t, u = it.share[2], it.share[3]
    if own_old == nil or t < t_old or (t == t_old and u < own_old) then
      own_new = u
      redis.call('HSET', OWN, item, string.format('%d', t) .. '|' .. u)
    end
  end
  -- views: the window ends each newly covers, as lo, hi pairs
  local ivs, nv = {}, 0
  local bits_old, bits_new = nil, nil  -- the owners' sets before / after
  for _, op in ipairs(it.views) do
    local viewer = op[2]
    local key = item .. '\31' .. viewer
    local s = redis.call('HGET', PV, key)
    local set = parse_bits(s)
    if viewer == own_old then bits_old = parse_bits(s) end
    local changed = false
    for _, b in ipairs(op[3]) do
      local added, lo, hi = cover_add(set, b, W)
      if added then
        changed = true
        if lo ~= nil then ivs[nv + 1] = lo; ivs[nv + 2] = hi; nv = nv + 2 end
      end
    end
    if changed then redis.call('HSET', PV, key, dump_bits(set)) end
    if viewer == own_new then bits_new = set end
  end
  -- the item's counts, and the window ends to re-qualify
  local base, arr = nil, {}
  local n = 0
  if nv > 0 or (own_new ~= own_old) then
    base, arr = parse_counts(redis.call('HGET', VC, item))
    n = #arr
  end
  local vlo, vhi = ivs[1], ivs[2]  -- the window ends the views changed
  for k = 3, nv, 2 do
    if ivs[k] < vlo then vlo = ivs[k] end
    if ivs[k + 1] > vhi then vhi = ivs[k + 1] end
  end
  if nv > 0 then
    local lo, hi = vlo, vhi
    if base == nil then
      base = lo
      for i = 1, hi - lo + 1 do arr[i] = 0 end
      n = hi - lo + 1
    else
      if lo < base then
        local shifted, d = {}, base - lo
        for i = 1, d do shifted[i] = 0 end
        for i = 1, n do shifted[i + d] = arr[i] end
        arr, base, n = shifted, lo, n + d
      end
      for i = n + 1, hi - base + 1 do arr[i] = 0 end
      if hi - base + 1 > n then n = hi - base + 1 end
    end
    for k = 1, nv, 2 do
      for i = ivs[k] - base + 1, ivs[k + 1] - base + 1 do arr[i] = arr[i] + 1 end
    end
    local packed = dump_counts(base, arr, n)
    if packed then redis.call('HSET', VC, item, packed) else redis.call('HDEL', VC, item) end
  end
  local lo, hi = nil, nil
  if own_new ~= nil and base ~= nil then
    if own_new ~= own_old then
      lo, hi = base, base + n - 1
    elseif nv > 0 then
      lo, hi = vlo, vhi
    end
  end
  if lo ~= nil then
    -- the owners' sets, read only now that they are needed
    if own_old ~= nil and bits_old == nil then bits_old = pv_bits(item, own_old) end
    if bits_new == nil then
      if own_new == own_old then bits_new = bits_old else bits_new = pv_bits(item, own_new) end
    end
    local run_lo, run_i, run_n = lo, 0, 0  -- a run of ends with the same changes
    for e = lo, hi do
      local v1 = arr[e - base + 1] or 0
      local v0 = v1
      for k = 1, nv, 2 do
        if ivs[k] <= e and e <= ivs[k + 1] then v0 = v0 - 1 end
      end
      local q0, c0, q1, c1 = 0, 0, 0, 0
      if own_old ~= nil then
        c0 = v0 - covers(bits_old, e)
        if c0 >= M then q0 = 1 else c0 = 0 end
      end
      c1 = v1 - covers(bits_new, e)
      if c1 >= M then q1 = 1 else c1 = 0 end
      if q1 - q0 ~= run_i or c1 - c0 ~= run_n then
        range_add('i', run_lo, e - 1, run_i)
        range_add('n', run_lo, e - 1, run_n)
        run_lo, run_i, run_n = e, q1 - q0, c1 - c0
      end
      if own_old == own_new then
        if q1 ~= q0 then owner_delta(own_new, e, q1 - q0) end
      else
        if own_old ~= nil and q0 == 1 then owner_delta(own_old, e, -1) end
        if q1 == 1 then owner_delta(own_new, e, 1) end
      end
    end
    range_add('i', run_lo, hi, run_i)
    range_add('n', run_lo, hi, run_n)
  end
end

if grouped then
  for _, op in ipairs(payload.g) do
    local g_old, g_new = latest_update(UG, op[1], op[2], op[3])
    if g_old ~= g_new then
      local m = oqs.get(op[1])
      for e, c in pairs(m) do
        if c > 0 then
          if g_old ~= nil then group_delta(g_old, e, -1) end
          group_delta(g_new, e, 1)
        end
      end
    end
  end
end
oqs.save()
gqs.save()
return finish()
