-- First start event, then end events after it, per entity: percentiles of
-- time-to-end and conversion within a delay.
--   "p" hash entity -> "s;a1,a2,...;c1,c2,..."
--        s  = the entity's earliest start ('' while none is known);
--        a* = the first k end times after s, sorted (later ones can never
--             matter again: a start can only move earlier);
--        c* = the end times a late, earlier start may still claim, sorted:
--             the entity's ends <= s (all of them while s is unknown) later
--             than params.floor (lowest partition watermark - lateness
--             horizon, when given: no start earlier than it can be accepted
--             any more). Kept inline while there are at most params.inline of
--             them; beyond, "*" and they live in "pz".
--   "pz" sorted set (every score 0, so ordered by member): the claimable ends
--        of the entities with more than params.inline of them. Member:
--        "<#entity>:<entity><t, 15 digits>", plus ".<n>" for the n-th repeat
--        of a time when k > 1. One entity's ends are one contiguous range: a
--        new end is O(log n), a claim or a trim one range command, whatever
--        the number of ends an entity keeps.
--   percentile: "z:<e>" sorted set per window end: entity -> (f - s) in ms
--   conversion: "c" cohort and "v" converted difference arrays
-- payload: {"e": [entity, start or false, n, end1, ..., endn, entity, ...]}
--          (one flat array: no table per entity to decode)
-- params:  {"w": window buckets, "r": resolution ms, "mode": "percentile"|"conversion",
--           "k": min end events, "within": ms or null, "floor": ms or null,
--           "inline": most claimable ends kept in "p", "append": false to
--           leave out the append path below (a test compares the two)}
local W, R, K = params.w, params.r, params.k
local within = params.within
if within == cjson.null then within = nil end
local floor = params.floor
if floor == cjson.null or (floor ~= nil and floor < 0) then floor = nil end
local INLINE = params.inline
local APPEND = params.append ~= false
local conversion = params.mode == 'conversion'
local H = P .. 'p'
local Z = P .. 'pz'

local function bucket(t) return math.floor(t / R) end
local function pad(t) return string.format('%015d', t) end

local function numbers(text)
  local out = {}
  for x in string.gmatch(text, '[^,]+') do out[#out + 1] = tonumber(x) end
  return out
end
local function joined(list)
  local parts = {}
  for i, t in ipairs(list) do parts[i] = string.format('%d', t) end
  return table.concat(parts, ',')
end

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

-- add end times to an entity's range of "pz"; repeats of one time are
-- numbered when k > 1 so that they count apart
local function zadd(prefix, ends)
  local members, repeats = {}, {}
  for _, t in ipairs(ends) do
    local m = prefix .. pad(t)
    if K > 1 then
      local n = repeats[t]
      if n == nil then n = redis.call('ZLEXCOUNT', Z, '[' .. m, '(' .. m .. '/') end
      repeats[t] = n + 1
      if n > 0 then m = m .. '.' .. n end
    end
    members[#members + 1] = 0
    members[#members + 1] = m
  end
  for i = 1, #members, 2000 do  -- unpack() has a stack limit
    redis.call('ZADD', Z, unpack(members, i, math.min(i + 1999, #members)))
  end
end

local ops = payload.e

-- the n end times from ops[at], as a table
local function ends_at(at, n)
  local out = {}
  for j = 1, n do out[j] = ops[at + j - 1] end
  return out
end

-- The usual op of an entity with no known start (and none in the op): its new
-- ends, none earlier than its last inline claimable end and all later than
-- the floor, are appended to the field's text without parsing it (times are
-- 0..15 digits, so the last one lies in the text's last 16 characters).
-- Returns false, having written nothing, for any other op: the general path
-- below gives the same result for the ops this one takes. Its n new ends are
-- ops[at], ..., ops[at + n - 1].
local function appended(entity, rec, at, n)
  if n == 0 or n > INLINE then return false end
  local cp = ''
  if rec then
    if string.sub(rec, 1, 2) ~= ';;' then return false end -- a start is known
    cp = string.sub(rec, 3)
    if cp == '*' then return false end
  end
  local low, new_ends = ops[at], nil -- the earliest new end; all of them when n > 1
  if n > 1 then
    new_ends = ends_at(at, n)
    table.sort(new_ends)
    low = new_ends[1]
  end
  local count = 0
  if cp ~= '' then
    -- The times are sorted and have no leading zeros, so their lengths never
    -- decrease: when the last one has as many digits as the first, so do all,
    -- and their count follows from the text's length (no scan of the text).
    local first = string.match(cp, '^%d+')
    local d, len = #first, #cp
    local last
    if (len == d or string.byte(cp, len - d) == 44) and (len + 1) % (d + 1) == 0 then
      last = tonumber(string.sub(cp, -d))
      count = (len + 1) / (d + 1)
    else
      last = tonumber(string.match(string.sub(cp, -16), '(%d+)$'))
      local _, commas = string.gsub(cp, ',', ',')
      count = commas + 1
    end
    if last == nil or low < last then return false end
    if floor ~= nil and tonumber(first) <= floor then return false end
    cp = cp .. ','
  end
  if floor ~= nil and low <= floor then return false end
  if count + n > INLINE then return false end
  local text
  if n == 1 then
    text = string.format('%d', low)
  else
    local parts = {}
    for i, t in ipairs(new_ends) do parts[i] = string.format('%d', t) end
    text = table.concat(parts, ',')
  end
  redis.call('HSET', H, entity, ';;' .. cp .. text)
  return true
end

-- Any op: the entity's start, first k ends and claimable ends updated, its
-- contribution moved when it changes.
local function general(entity, rec, start, new_ends)
  local prefix = #entity .. ':' .. entity
  local s, after, cands, spilled = nil, {}, {}, false
  if rec then
    local sp, ap, cp = string.match(rec, '^([^;]*);([^;]*);(.*)$')
    s = tonumber(sp)
    after = numbers(ap)
    if cp == '*' then spilled = true else cands = numbers(cp) end
  end
  local before = contribution(s, after)
  local changed = false
  if start and (s == nil or start < s) then
    -- an earlier start claims the claimable ends after it (all were <= the old start)
    if spilled then
      local lo, hi = '[' .. prefix .. pad(start + 1), '(' .. prefix .. 'A'
      for _, m in ipairs(redis.call('ZRANGEBYLEX', Z, lo, hi, 'LIMIT', 0, K)) do
        after[#after + 1] = tonumber(string.sub(m, #prefix + 1, #prefix + 15))
      end
      redis.call('ZREMRANGEBYLEX', Z, lo, hi)
    else
      local kept = {}
      for _, t in ipairs(cands) do
        if t > start then after[#after + 1] = t else kept[#kept + 1] = t end
      end
      cands = kept
    end
    after = first_k(after)
    s = start
    changed = true
  end
  local added = {}
  for _, t in ipairs(new_ends) do
    if s ~= nil and t > s then
      if #after < K or t < after[K] then
        after[#after + 1] = t
        after = first_k(after)
        changed = true
      end
    elseif floor == nil or t > floor then
      added[#added + 1] = t
    end
  end
  if spilled then
    if #added > 0 then
      zadd(prefix, added)
      if floor ~= nil then
        redis.call('ZREMRANGEBYLEX', Z, '[' .. prefix, '(' .. prefix .. pad(floor) .. '/')
      end
    end
  elseif #added > 0 or (floor ~= nil and #cands > 0 and cands[1] <= floor) then
    for _, t in ipairs(added) do cands[#cands + 1] = t end
    table.sort(cands)
    local kept = {}
    for _, t in ipairs(cands) do
      if floor == nil or t > floor then kept[#kept + 1] = t end
    end
    cands = kept
    if #cands > INLINE then
      zadd(prefix, cands)
      cands = {}
      spilled = true
    end
    changed = true
  end
  if changed then
    local now = contribution(s, after)
    local same = (before == nil and now == nil) or
      (before ~= nil and now ~= nil and before.s == now.s and before.f == now.f)
    if not same then
      apply(before, -1, entity)
      apply(now, 1, entity)
    end
    local sp = ''
    if s ~= nil then sp = string.format('%d', s) end
    local cp = '*'
    if not spilled then cp = joined(cands) end
    if sp == '' and cp == '' then
      redis.call('HDEL', H, entity)
    else
      redis.call('HSET', H, entity, sp .. ';' .. joined(after) .. ';' .. cp)
    end
  end
end

local i, count = 1, #ops
while i <= count do
  local entity, start, n = ops[i], ops[i + 1], ops[i + 2]
  local rec = redis.call('HGET', H, entity)
  if start or not APPEND or not appended(entity, rec, i + 3, n) then
    general(entity, rec, start, ends_at(i + 3, n))
  end
  i = i + 3 + n
end
return finish()
