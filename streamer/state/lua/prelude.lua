-- Shared helpers for every unit script (prepended by streamer/state/scripts.py).
-- Calling convention of an apply script:
--   KEYS[1] = "<prefix>applied"  (hash: partition -> last applied offset)
--   ARGV[1] = partition, ARGV[2] = expected applied offset ("-1" for none),
--   ARGV[3] = new applied offset, ARGV[4] = payload (MessagePack: no null in
--   an array, false stands for none), ARGV[5] = params JSON
-- Every other key of the unit is "<prefix>..." and shares KEYS[1]'s hash tag,
-- so the whole unit lives in one Redis Cluster slot.
local APPLIED = KEYS[1]
local P = string.sub(APPLIED, 1, #APPLIED - 7)
local cur = redis.call('HGET', APPLIED, ARGV[1])
if (cur or '-1') ~= ARGV[2] then
  return 0  -- someone else applied offsets since we read: the caller re-reads
end
local payload = cmsgpack.unpack(ARGV[4])
local params = cjson.decode(ARGV[5])

-- "k,v,k,v" <-> {k = v}; keys and values are integers
local function parse_map(s)
  local t = {}
  if not s then return t end
  local k = nil
  for x in string.gmatch(s, '[^,]+') do
    if k == nil then k = tonumber(x) else t[k] = tonumber(x); k = nil end
  end
  return t
end
local function dump_map(t)
  local keys = {}
  for k, v in pairs(t) do if v ~= 0 then keys[#keys + 1] = k end end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = string.format('%d,%d', k, t[k]) end
  return table.concat(parts, ',')
end
local function bounds(t)
  local lo, hi = nil, nil
  for k, v in pairs(t) do
    if v ~= 0 then
      if lo == nil or k < lo then lo = k end
      if hi == nil or k > hi then hi = k end
    end
  end
  return lo, hi
end

-- Difference arrays over window ends: value(e) = sum of fields <= e.
-- Changes are accumulated per array and written once at the end.
local acc = {}
local function point(array, e, d)
  if d == 0 then return end
  local a = acc[array]
  if a == nil then a = {}; acc[array] = a end
  a[e] = (a[e] or 0) + d
  a[e + 1] = (a[e + 1] or 0) - d
end
local function range_add(array, lo, hi, d)
  if lo > hi or d == 0 then return end
  local a = acc[array]
  if a == nil then a = {}; acc[array] = a end
  a[lo] = (a[lo] or 0) + d
  a[hi + 1] = (a[hi + 1] or 0) - d
end
local function vec_diff(array, lo, hi, old, new)
  for e = lo, hi do point(array, e, (new[e] or 0) - (old[e] or 0)) end
end
local function flush()
  for array, a in pairs(acc) do
    local key = P .. array
    for e, d in pairs(a) do
      if d ~= 0 then redis.call('HINCRBY', key, e, d) end
    end
  end
end

-- Qualification over window ends lo..hi: 1 where the counts of buckets
-- [e - w, e) add up to at least n.
local function qual_vec(counts, lo, hi, w, n)
  local v = {}
  local s = 0
  for b = lo - w, lo - 1 do s = s + (counts[b] or 0) end
  for e = lo, hi do
    if s >= n then v[e] = 1 else v[e] = 0 end
    s = s + (counts[e] or 0) - (counts[e - w] or 0)
  end
  return v
end

-- Sparse bucket sets "word:mask,word:mask,...": bucket b is bit (b - 32 * word)
-- of the 32-bit mask of word floor(b / 32). Any bucket, however far from the
-- others, has its bit: nothing is ever shifted out.
local band, bor, lshift, floor = bit.band, bit.bor, bit.lshift, math.floor
local function parse_bits(s)
  local t = {}
  if not s then return t end
  local w, m = string.match(s, '^(-?%d+):(-?%d+)$')
  if w ~= nil then
    t[tonumber(w)] = tonumber(m)
    return t
  end
  for w2, m2 in string.gmatch(s, '(-?%d+):(-?%d+)') do t[tonumber(w2)] = tonumber(m2) end
  return t
end
local function dump_bits(t)
  local n, last = 0, nil
  for w, m in pairs(t) do if m ~= 0 then n, last = n + 1, w end end
  if n == 1 then return string.format('%d:%d', last, t[last]) end
  local words = {}
  for w, m in pairs(t) do if m ~= 0 then words[#words + 1] = w end end
  table.sort(words)
  local parts = {}
  for i, w in ipairs(words) do parts[i] = string.format('%d:%d', w, t[w]) end
  return table.concat(parts, ',')
end
local function bits_has(t, b)
  local w = floor(b / 32)
  local m = t[w]
  return m ~= nil and band(m, lshift(1, b - 32 * w)) ~= 0
end
local function bits_set(t, b)
  local w = floor(b / 32)
  t[w] = bor(t[w] or 0, lshift(1, b - 32 * w))
end
-- bits a..z (0 <= a <= z <= 31) of a word
local function span_mask(a, z)
  local high = -1
  if z < 31 then high = lshift(1, z + 1) - 1 end
  return band(lshift(-1, a), high)
end
-- the greatest bucket of the set in [lo, x], or nil (one test per word)
local function bits_prev(t, x, lo)
  while x >= lo do
    local w = floor(x / 32)
    local base = 32 * w
    local m = t[w]
    if m ~= nil then
      local a = lo - base
      if a < 0 then a = 0 end
      if band(m, span_mask(a, x - base)) ~= 0 then
        for p = x - base, a, -1 do
          if band(m, lshift(1, p)) ~= 0 then return base + p end
        end
      end
    end
    x = base - 1
  end
  return nil
end
-- the smallest bucket of the set in [x, hi], or nil
local function bits_next(t, x, hi)
  while x <= hi do
    local w = floor(x / 32)
    local base = 32 * w
    local m = t[w]
    if m ~= nil then
      local z = hi - base
      if z > 31 then z = 31 end
      if band(m, span_mask(x - base, z)) ~= 0 then
        for p = x - base, z do
          if band(m, lshift(1, p)) ~= 0 then return base + p end
        end
      end
    end
    x = base + 32
  end
  return nil
end

-- Coverage: a bucket b covers the window ends (b, b + w]. Adds b to the set:
-- false when it was there already, else true and the window ends it newly
-- covers as lo, hi (nil when none): its own ends minus those of its nearest
-- predecessor and successor within w.
local function cover_add(t, b, w)
  local word = floor(b / 32)
  local bitb = lshift(1, b - 32 * word)
  local m = t[word]
  if m ~= nil and band(m, bitb) ~= 0 then return false end
  local p = bits_prev(t, b - 1, b - w + 1)
  local s = bits_next(t, b + 1, b + w - 1)
  t[word] = bor(m or 0, bitb)
  local lo, hi = b + 1, b + w
  if p ~= nil then lo = p + w + 1 end
  if s ~= nil then hi = s end
  if lo > hi then return true end
  return true, lo, hi
end
-- Calls f(a, z) for the covered window ends of [x, y], as disjoint runs.
local function each_covered(t, x, y, w, f)
  local e = x
  while e <= y do
    local p = bits_prev(t, e - 1, e - w)
    if p ~= nil then
      local z = math.min(y, p + w)
      f(e, z)
      e = z + 1
    else
      local s = bits_next(t, e, y - 1)
      if s == nil then return end
      e = s + 1
    end
  end
end

-- A cached hash of packed maps (entity -> {bucket -> count}).
local function map_cache(key)
  local cache = {}
  local dirty = {}
  local self = {}
  function self.get(field)
    local m = cache[field]
    if m == nil then
      m = parse_map(redis.call('HGET', key, field))
      cache[field] = m
    end
    return m
  end
  function self.touch(field) dirty[field] = true end
  function self.save()
    for field, _ in pairs(dirty) do
      local s = dump_map(cache[field])
      if s == '' then redis.call('HDEL', key, field) else redis.call('HSET', key, field, s) end
    end
  end
  return self
end

-- "t|value" records kept at their greatest (t, value): latest group of an entity.
local function latest_update(key, field, t, value)
  local rec = redis.call('HGET', key, field)
  local old = nil
  if rec then
    local t0, v0 = string.match(rec, '^([^|]*)|(.*)$')
    t0 = tonumber(t0)
    old = v0
    if t < t0 or (t == t0 and value <= v0) then return old, old end
  end
  redis.call('HSET', key, field, string.format('%d', t) .. '|' .. value)
  return old, value
end
local function latest_value(key, field)
  local rec = redis.call('HGET', key, field)
  if not rec then return nil end
  local _, v0 = string.match(rec, '^([^|]*)|(.*)$')
  return v0
end

local function finish()
  flush()
  redis.call('HSET', APPLIED, ARGV[1], ARGV[3])
  return 1
end
