-- Label registry of one broken-down metric (streamer/windows/breakdown.py).
--   KEYS[1] "<prefix>labels"  hash value -> label index (1..max_values), in
--           admission order; label 0 is "other". Only grows, never beyond max.
-- ARGV: partition, max_values, candidates JSON [value, ...] (first-seen order)
-- Admits each unknown candidate while there is room, atomically, then returns
-- {indexes (one per candidate, 0 = other), registry size,
--  applied offset in this partition of labels 0..size ("" when none)}.
-- Not a unit script: it touches no unit state and records no offset.
local REG = KEYS[1]
local P = string.sub(REG, 1, #REG - 6)
local part, max = ARGV[1], tonumber(ARGV[2])
local candidates = cjson.decode(ARGV[3])
local n = redis.call('HLEN', REG)
local out = {}
for i, value in ipairs(candidates) do
  local index = tonumber(redis.call('HGET', REG, value) or '')
  if index == nil then
    if n < max then
      n = n + 1
      redis.call('HSET', REG, value, n)
      index = n
    else
      index = 0
    end
  end
  out[i] = index
end
local offsets = {}
for j = 0, n do
  offsets[j + 1] = redis.call('HGET', P .. 'b' .. j .. ':applied', part) or ''
end
return {out, n, offsets}
