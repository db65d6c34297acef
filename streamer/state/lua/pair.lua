-- First start event, then end events after it, per entity: percentiles of
-- time-to-end and conversion within a delay.
--   "p" hash entity -> "s;a1,a2,..."  s = the entity's earliest start, a* =
--        the first k end times after s, sorted (later ones can never matter
--        again: a start can only move earlier). No field while no start is
--        known.
--   "pz" sorted set (every score 0, so ordered by member): the end times a
--        late, earlier start may still claim: the entity's ends <= s (all of
--        them while s is unknown) later than params.floor (lowest partition
--        watermark - lateness horizon, when given; no start earlier than it
--        can be accepted any more). Member: "<#entity>:<entity><t, 15 digits>",
--        plus ".<n>" for the n-th repeat of a time when k > 1. A new end or a
--        claim is O(log n) whatever the number of ends an entity keeps.
--   percentile: "z:<e>" sorted set per window end: entity -> (f - s) in ms
--   conversion: "c" cohort and "v" converted difference arrays
-- payload: {"e": [[entity, start or null, [end, ...]], ...]}
-- params:  {"w": window buckets, "r": resolution ms, "mode": "percentile"|"conversion",
--           "k": min end events, "within": ms or null, "floor": ms or null}
local W, R, K = params.w, params.r, params.k
local within = params.within
if within == cjson.null then within = nil end
local floor = params.floor
if floor == cjson.null or (floor ~= nil and floor < 0) then floor = nil end
local conversion = params.mode == 'conversion'
local H = P .. 'p'
local Z = P .. 'pz'

local function bucket(t) return math.floor(t / R) end
local function pad(t) return string.format('%015d', t) end

-- the entity's claimable ends in (t, +inf): lex bounds on its members
local function above(prefix, t) return '[' .. prefix .. pad(t + 1), '(' .. prefix .. 'A' end

local function contribution(s, after)
  if s == nil then return nil end
  local c = {s = s, bs = bucket(s)}
  local f = after[K]
  if f ~= nil and (within == nil or f - s <= within) then c.f = f end
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

-- keep the first K of a list of end times
local function first_k(ends)
  table.sort(ends)
  local out = {}
  for i = 1, math.min(K, #ends) do out[i] = ends[i] end
  return out
end

for _, op in ipairs(payload.e) do
  local entity, start, new_ends = op[1], op[2], op[3]
  local prefix = #entity .. ':' .. entity
  local rec = redis.call('HGET', H, entity)
  local s, after = nil, {}
  if rec then
    local sp, rest = string.match(rec, '^([^;]*);(.*)$')
    s = tonumber(sp)
    for x in string.gmatch(rest, '[^,]+') do after[#after + 1] = tonumber(x) end
  end
  local before = contribution(s, after)
  local changed = false
  if start ~= cjson.null and (s == nil or start < s) then
    -- an earlier start claims the kept ends after it (all were <= the old start)
    local lo, hi = above(prefix, start)
    local claimed = redis.call('ZRANGEBYLEX', Z, lo, hi, 'LIMIT', 0, K)
    for _, m in ipairs(claimed) do
      after[#after + 1] = tonumber(string.sub(m, #prefix + 1, #prefix + 15))
    end
    if #claimed > 0 then redis.call('ZREMRANGEBYLEX', Z, lo, hi) end
    after = first_k(after)
    s = start
    changed = true
  end
  local members, repeats = {}, {}
  for _, t in ipairs(new_ends) do
    if s ~= nil and t > s then
      if #after < K or t < after[K] then
        after[#after + 1] = t
        after = first_k(after)
        changed = true
      end
    elseif floor == nil or t > floor then
      local m = prefix .. pad(t)
      if K > 1 then
        -- repeats of one time count separately: number them
        local n = repeats[t]
        if n == nil then
          n = redis.call('ZLEXCOUNT', Z, '[' .. m, '(' .. m .. '/')
        end
        repeats[t] = n + 1
        if n > 0 then m = m .. '.' .. n end
      end
      members[#members + 1] = 0
      members[#members + 1] = m
    end
  end
  if #members > 0 then
    for i = 1, #members, 2000 do  -- unpack() has a stack limit
      redis.call('ZADD', Z, unpack(members, i, math.min(i + 1999, #members)))
    end
    if floor ~= nil then
      redis.call('ZREMRANGEBYLEX', Z, '[' .. prefix, '(' .. prefix .. pad(floor) .. '/')
    end
  end
  if changed then
    local now = contribution(s, after)
    local same = (before == nil and now == nil) or
      (before ~= nil and now ~= nil and before.s == now.s and before.f == now.f)
    if not same then
      apply(before, -1, entity)
      apply(now, 1, entity)
    end
    local parts = {}
    for i, t in ipairs(after) do parts[i] = string.format('%d', t) end
    redis.call('HSET', H, entity, string.format('%d', s) .. ';' .. table.concat(parts, ','))
  end
end
return finish()
