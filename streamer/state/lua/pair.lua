-- First start event, then end events after it, per entity: percentiles of
-- time-to-end and conversion within a delay.
--   "p" hash entity -> "s;t1,t2,..."  s = earliest start (empty if none yet);
--        t* = sorted end times: those <= s that a late, earlier start may
--        still claim (later than params.floor = lowest partition watermark -
--        lateness horizon, when given) and the first k after s (later ones
--        can never matter again).
--   percentile: "z:<e>" sorted set per window end: entity -> (f - s) in ms
--   conversion: "c" cohort and "v" converted difference arrays
-- payload: {"e": [[entity, start or null, [end, ...]], ...]}
-- params:  {"w": window buckets, "r": resolution ms, "mode": "percentile"|"conversion",
--           "k": min end events, "within": ms or null}
local W, R, K = params.w, params.r, params.k
local within = params.within
local floor = params.floor
if floor == cjson.null then floor = nil end
local conversion = params.mode == 'conversion'
local H = P .. 'p'

local function bucket(t) return math.floor(t / R) end

local function load(entity)
  local rec = redis.call('HGET', H, entity)
  local s, ends = nil, {}
  if rec then
    local sp, rest = string.match(rec, '^([^;]*);(.*)$')
    s = tonumber(sp)
    for x in string.gmatch(rest, '[^,]+') do ends[#ends + 1] = tonumber(x) end
  end
  return s, ends
end

-- the k-th end strictly after s, or nil
local function kth_after(s, ends, k)
  local seen = 0
  for _, t in ipairs(ends) do
    if t > s then
      seen = seen + 1
      if seen == k then return t end
    end
  end
  return nil
end

local function contribution(s, ends)
  if s == nil then return nil end
  local c = {s = s, bs = bucket(s)}
  local f = kth_after(s, ends, K)
  if f ~= nil and (within == nil or within == cjson.null or f - s <= within) then c.f = f end
  return c
end

local function apply(c, sign, entity)
  if c == nil then return end
  local top = c.bs + W
  if conversion then
    range_add('c', c.bs + 1, top, sign)
    if c.f ~= nil then range_add('v', bucket(c.f) + 1, top, sign) end
  elseif c.f ~= nil then
    for e = bucket(c.f) + 1, top do
      if sign > 0 then
        redis.call('ZADD', P .. 'z:' .. e, c.f - c.s, entity)
      else
        redis.call('ZREM', P .. 'z:' .. e, entity)
      end
    end
  end
end

for _, op in ipairs(payload.e) do
  local entity, start, new_ends = op[1], op[2], op[3]
  local s, ends = load(entity)
  local before = contribution(s, ends)
  if start ~= cjson.null and (s == nil or start < s) then s = start end
  for _, t in ipairs(new_ends) do ends[#ends + 1] = t end
  table.sort(ends)
  local kept, after_s = {}, 0
  for _, t in ipairs(ends) do
    if s == nil or t <= s then
      -- only a start not yet seen could claim this end; it must be later than
      -- the floor (lowest partition watermark - horizon) to be accepted, and
      -- an end must be strictly after its start
      if floor == nil or t > floor then kept[#kept + 1] = t end
    elseif after_s < K then
      kept[#kept + 1] = t
      after_s = after_s + 1
    end
  end
  local now = contribution(s, kept)
  local same = (before == nil and now == nil) or
    (before ~= nil and now ~= nil and before.s == now.s and before.f == now.f)
  if not same then
    apply(before, -1, entity)
    apply(now, 1, entity)
  end
  local parts = {}
  for i, t in ipairs(kept) do parts[i] = string.format('%d', t) end
  local sp = ''
  if s ~= nil then sp = string.format('%d', s) end
  redis.call('HSET', H, entity, sp .. ';' .. table.concat(parts, ','))
end
return finish()
