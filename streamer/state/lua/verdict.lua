-- Lateness and duplicate verdicts for one batch of one partition, in order.
--   KEYS[1] "wm"  hash partition -> watermark (greatest accepted event time;
--                 advanced by the caller only after every unit applied)
--   KEYS[2] "ids" hash insert id -> "t|partition:offset" of its latest accepted event
--   KEYS[3] "idg" hash partition -> first UTC day whose id list may still exist
--   KEYS[4] "idd" prefix of the lists "idd:<partition>:<day>": ids accepted in
--                 the partition with an event time in that UTC day, to forget
--                 them once the partition's watermark passes the whole day by
--                 horizon + dedupe (LPOP per list, no sorted set)
--   KEYS[5] "vl:<partition>" list of the partition's last RECENT verdict
--                 segments "first offset,last offset,verdicts" (one character
--                 per offset, "-" for an offset that was not an event)
--   KEYS[6] "wj"  hash partition -> judged watermark (greatest time this
--                 script accepted; advanced here, so that a partition's next
--                 batch can be judged while this one applies). Lateness is
--                 judged against the greater of "wm" and "wj"; "wm" alone
--                 (the applied one) forgets ids and bounds the pair floor.
-- ARGV: partition, horizon ms, dedupe ms, events (MessagePack), flat:
--       [id or "", t, offset, id or "", t, offset, ...] (one array, not one per
--       event: the decoder builds no table per event)
-- Returns {verdicts ("a" accepted, "l" late, "d" duplicate per event), stored watermark or "",
--          lowest stored watermark of any partition or ""}.
-- Idempotent for a re-delivered batch: an id recorded by this very event
-- (same partition:offset) is not its own duplicate, and ids are only
-- forgotten by the stored watermark (the one a re-delivery starts from), so
-- no id a verdict of the batch looked at disappears before the batch applied.
-- Reproducible for a record judged again (a batch retried after a Redis fault
-- between its round trips, re-read after a crash or a refused commit): an
-- offset found in the partition's recent segments gets the verdict it got,
-- and changes nothing; it does not meet its own insert id, nor the watermark
-- its own batch advanced. The judged watermark may run ahead of the stored
-- one by the batches judged and not applied yet (a worker judges at most two
-- ahead): their offsets are in the recent segments, so they are judged again
-- the same, wherever a re-delivery's batches start and end.
local part = ARGV[1]
local H, D = tonumber(ARGV[2]), tonumber(ARGV[3])
local flat = cmsgpack.unpack(ARGV[4])
local n = #flat / 3 -- events
local WM, IDS, GCDAY = KEYS[1], KEYS[2], KEYS[3]
local LISTS = KEYS[4] .. ':' .. part .. ':'
local DAY = 86400000
local VLOG, RECENT = KEYS[5], 8

-- only segments that overlap this batch (none in the usual, first delivery)
local segments = {}
if n > 0 then
  local first, last = flat[3], flat[#flat]
  for _, raw in ipairs(redis.call('LRANGE', VLOG, 0, -1)) do
    local f, l, v = string.match(raw, '^(%d+),(%d+),(.*)$')
    f, l = tonumber(f), tonumber(l)
    if f <= last and l >= first then segments[#segments + 1] = {f, l, v} end
  end
end
local function judged(off)
  for j = #segments, 1, -1 do
    local seg = segments[j]
    if off >= seg[1] and off <= seg[2] then
      if string.sub(seg[3], 1, 1) == '~' then -- a sparse batch: "~offset=v;offset=v..."
        return string.match(seg[3], '[~;]' .. string.format('%d', off) .. '=(%a)')
      end
      local c = string.sub(seg[3], off - seg[1] + 1, off - seg[1] + 1)
      if c ~= '-' then return c end
      return nil
    end
  end
  return nil
end

local stored = redis.call('HGET', WM, part)
local stored_wm = tonumber(stored or '')
local judged_wm = tonumber(redis.call('HGET', KEYS[6], part) or '')
local wm = stored_wm
if judged_wm ~= nil and (wm == nil or judged_wm > wm) then wm = judged_wm end
local wm_before = wm

local function partition_of(origin) return string.match(origin, '^(.*):[^:]*$') end

-- A record written by another partition is forgotten once that partition's
-- stored watermark passed it by H + D. (One of this partition's is too, but
-- then it is more than D from any event that is not late: no need to look.)
local other_wm = {}
local function forgotten(t0, origin0)
  local p0 = partition_of(origin0)
  if p0 == part then return false end
  local w = other_wm[p0]
  if w == nil then
    w = tonumber(redis.call('HGET', WM, p0) or '') or false
    other_wm[p0] = w
  end
  return w ~= false and t0 < w - H - D
end

local out = {}
local days = {}
local prefix = part .. ':'
local fresh = 0 -- events judged now (not found in the recent segments)
local lo, hi = nil, nil
for i = 1, n do
  local id, t, off = flat[3 * i - 2], flat[3 * i - 1], flat[3 * i]
  local v = nil
  if #segments > 0 then v = judged(off) end
  if v ~= nil then
    -- judged before: the same verdict, nothing written again
  elseif wm ~= nil and t < wm - H then
    fresh = fresh + 1
    v = 'l'
  else
    fresh = fresh + 1
    v = 'a'
    if id ~= '' then
      local rec = string.format('%d|%s%d', t, prefix, off) -- "t|partition:offset"
      -- a fresh id (the usual case) costs this one command
      if redis.call('HSETNX', IDS, id, rec) == 0 then
        local t0, o0 = string.match(redis.call('HGET', IDS, id), '^([^|]*)|(.*)$')
        t0 = tonumber(t0)
        if o0 == prefix .. string.format('%d', off) then
          rec = nil -- this very event, recorded by an earlier delivery of the batch
        elseif math.abs(t - t0) <= D and not forgotten(t0, o0) then
          v = 'd'
        else
          redis.call('HSET', IDS, id, rec)
        end
      end
      if v == 'a' and rec ~= nil then
        local d = math.floor(t / DAY)
        local list = days[d]
        if list == nil then list = {}; days[d] = list end
        list[#list + 1] = id
      end
    end
  end
  if v == 'a' and (wm == nil or t > wm) then wm = t end
  if lo == nil then lo = off end
  hi = off
  out[i] = v
end

-- remember this batch's verdicts by offset (offsets increase within a batch):
-- every batch with a fresh verdict, since the judged watermark already
-- counts its events (a batch judged again must meet its own verdicts)
local text = table.concat(out)
if fresh > 0 then
  local seg = text -- offsets without a gap (the usual case): the verdicts as they are
  if hi - lo + 1 > 4 * n + 1000 then -- sparse (records that were no event): by offset
    local parts = {}
    for j = 1, n do parts[j] = string.format('%d=%s', flat[3 * j], out[j]) end
    seg = '~' .. table.concat(parts, ';')
  elseif hi - lo + 1 ~= n then
    local chars, j = {}, 1
    for o = lo, hi do
      if j <= n and flat[3 * j] == o then
        chars[#chars + 1] = out[j]
        j = j + 1
      else
        chars[#chars + 1] = '-'
      end
    end
    seg = table.concat(chars)
  end
  redis.call('RPUSH', VLOG, string.format('%d,%d,', lo, hi) .. seg)
  redis.call('LTRIM', VLOG, -RECENT, -1)
end

-- remember which day each new record belongs to
local first = tonumber(redis.call('HGET', GCDAY, part) or '')
local moved = false
for d, list in pairs(days) do
  for s = 1, #list, 1000 do
    redis.call('RPUSH', LISTS .. d, unpack(list, s, math.min(#list, s + 999)))
  end
  if first == nil or d < first then first, moved = d, true end
end

-- forget the ids of the days wholly before stored watermark - H - D, oldest
-- first, at most about one batch's worth per call (so it keeps pace)
if stored_wm ~= nil and first ~= nil then
  local cutoff = stored_wm - H - D
  local last = math.floor(cutoff / DAY) -- days < last end before cutoff
  local budget = n + 1000
  while first < last and budget > 0 do
    local ids = redis.call('LPOP', LISTS .. first, math.min(budget, 1000))
    if ids then
      budget = budget - #ids
      for _, id in ipairs(ids) do
        local rec = redis.call('HGET', IDS, id)
        if rec then
          local t0, o0 = string.match(rec, '^([^|]*)|(.*)$')
          -- kept when a later event (other day or partition) took the id over
          if tonumber(t0) < cutoff and partition_of(o0) == part then redis.call('HDEL', IDS, id) end
        end
      end
    else
      first, moved = first + 1, true -- the list is gone (LPOP deletes an emptied list)
      budget = budget - 1
    end
  end
end
if moved then redis.call('HSET', GCDAY, part, string.format('%d', first)) end
if wm ~= nil and wm ~= wm_before then redis.call('HSET', KEYS[6], part, string.format('%d', wm)) end
-- the lowest stored watermark of the tree's partitions: no event earlier than
-- it minus the horizon can be accepted any more, in any partition that has a
-- watermark (the pair unit forgets end times that no such start could claim)
local low = nil
for _, v in ipairs(redis.call('HVALS', WM)) do
  local x = tonumber(v)
  if x ~= nil and (low == nil or x < low) then low = x end
end
return {text, stored or '', low and string.format('%d', low) or ''}
