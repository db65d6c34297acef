-- Items created by one user and consumed by others (Weekly Learning Users).
--   "own" hash item -> "t|user"  earliest created_by event (ties: smallest user)
--   "pv"  hash item\31viewer -> packed {bucket -> 1}  buckets with a view
--   "vc"  hash item -> packed {window end -> viewers active in the window}
--         (the owner included; consumers = vc - owner's own coverage)
--   "oq"  hash user -> packed {window end -> broadcast items owned}
--   "ug"  hash user -> "t|group" latest group                 [group mode]
--   "gq"  hash group -> packed {window end -> owners}          [group mode]
--   difference arrays: "i" broadcast items, "n" consumptions, "o" owners,
--   "g" groups with at least gm owners
-- payload: {"s": [[item, t, user]], "v": [[item, viewer, [b, ...]]], "g": [[user, t, group]]}
-- params:  {"w": window buckets, "m": min consumers, "gm": min owners or null}
local W, M = params.w, params.m
local grouped = params.gm ~= nil and params.gm ~= cjson.null
local GM = params.gm
local OWN, UG = P .. 'own', P .. 'ug'
local pvs = map_cache(P .. 'pv')
local vcs = map_cache(P .. 'vc')
local oqs = map_cache(P .. 'oq')
local gqs = map_cache(P .. 'gq')
local pv_before = {}

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end
local function pv_get(key)
  local set = pvs.get(key)
  if pv_before[key] == nil then pv_before[key] = copy(set) end
  return set
end
local function owner_of(item)
  local rec = redis.call('HGET', OWN, item)
  if not rec then return nil, nil end
  local t, u = string.match(rec, '^([^|]*)|(.*)$')
  return tonumber(t), u
end
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
  local t_old, own_old = owner_of(item)
  local vc = vcs.get(item)
  local vc_old = copy(vc)
  for _, op in ipairs(it.views) do
    local key = item .. '\31' .. op[2]
    local set = pv_get(key)
    local old = copy(set)
    local lo, hi = nil, nil
    for _, b in ipairs(op[3]) do
      if set[b] == nil then
        set[b] = 1
        if lo == nil or b + 1 < lo then lo = b + 1 end
        if hi == nil or b + W > hi then hi = b + W end
      end
    end
    if lo ~= nil then
      pvs.touch(key)
      local c0 = qual_vec(old, lo, hi, W, 1)
      local c1 = qual_vec(set, lo, hi, W, 1)
      for e = lo, hi do vc[e] = (vc[e] or 0) + c1[e] - c0[e] end
      vcs.touch(item)
    end
  end
  local own_new = own_old
  if it.share then
    local t, u = it.share[2], it.share[3]
    if own_old == nil or t < t_old or (t == t_old and u < own_old) then
      own_new = u
      redis.call('HSET', OWN, item, string.format('%d', t) .. '|' .. u)
    end
  end
  local lo, hi = bounds(vc)
  if lo ~= nil and own_new ~= nil then
    local oa_old, oa_new = {}, {}
    if own_old ~= nil then
      local key = item .. '\31' .. own_old
      pv_get(key)
      oa_old = qual_vec(pv_before[key], lo, hi, W, 1)
    end
    oa_new = qual_vec(pv_get(item .. '\31' .. own_new), lo, hi, W, 1)
    for e = lo, hi do
      local q0, c0, q1, c1 = 0, 0, 0, 0
      if own_old ~= nil then
        c0 = (vc_old[e] or 0) - oa_old[e]
        if c0 >= M then q0 = 1 else c0 = 0 end
      end
      c1 = (vc[e] or 0) - oa_new[e]
      if c1 >= M then q1 = 1 else c1 = 0 end
      point('i', e, q1 - q0)
      point('n', e, c1 - c0)
      if own_old == own_new then
        if q1 ~= q0 then owner_delta(own_new, e, q1 - q0) end
      else
        if own_old ~= nil and q0 == 1 then owner_delta(own_old, e, -1) end
        if q1 == 1 then owner_delta(own_new, e, 1) end
      end
    end
  end
end

if grouped then
  for _, op in ipairs(payload.g) do
    local g_old, g_new = latest_update(UG, op[1], op[2], op[3])
    if g_old ~= g_new then
      local m = oqs.get(op[1])
      for e, n in pairs(m) do
        if n > 0 then
          if g_old ~= nil then group_delta(g_old, e, -1) end
          group_delta(g_new, e, 1)
        end
      end
    end
  end
end
pvs.save()
vcs.save()
oqs.save()
gqs.save()
return finish()
