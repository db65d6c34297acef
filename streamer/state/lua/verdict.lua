-- Lateness and duplicate verdicts for one batch of one partition, in order.
--   KEYS[1] "wm"  hash partition -> watermark (greatest accepted event time;
--                 advanced by the caller only after every unit applied)
--   KEYS[2] "ids" hash insert id -> "t|partition:offset" of its latest accepted event
--   KEYS[3] "idt:<partition>" sorted set insert id -> t of the ids this partition
--                 recorded (to forget them by this partition's own watermark: another
--                 partition's watermark, possibly far ahead, must not forget them)
-- ARGV: partition, horizon ms, dedupe ms, events JSON [[id or "", t, offset], ...]
-- Returns {verdicts ("a" accepted, "l" late, "d" duplicate per event), stored watermark or ""}.
-- Idempotent for a re-delivered batch: an id recorded by this very event
-- (same partition:offset) is not its own duplicate.
local part = ARGV[1]
local H, D = tonumber(ARGV[2]), tonumber(ARGV[3])
local events = cjson.decode(ARGV[4])
local stored = redis.call('HGET', KEYS[1], part)
local wm = tonumber(stored or '')
local out = {}
for i, ev in ipairs(events) do
  local id, t = ev[1], ev[2]
  local v = 'a'
  if wm ~= nil and t < wm - H then
    v = 'l'
  elseif id ~= '' then
    local origin = part .. ':' .. string.format('%d', ev[3])
    local rec = redis.call('HGET', KEYS[2], id)
    if rec then
      local t0, o0 = string.match(rec, '^([^|]*)|(.*)$')
      if o0 ~= origin and math.abs(t - tonumber(t0)) <= D then v = 'd' end
    end
    if v == 'a' then
      redis.call('HSET', KEYS[2], id, string.format('%d', t) .. '|' .. origin)
      redis.call('ZADD', KEYS[3], t, id)
    end
  end
  if v == 'a' and (wm == nil or t > wm) then wm = t end
  out[i] = v
end
if wm ~= nil then
  -- forget ids that can no longer match an event of this partition that is not
  -- late; an id another partition recorded since stays (its own zset forgets it)
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', string.format('(%d', wm - H - D), 'LIMIT', 0, 1000)
  if #old > 0 then
    local prefix = '|' .. part .. ':'
    for _, id in ipairs(old) do
      local rec = redis.call('HGET', KEYS[2], id)
      if rec and string.find(rec, prefix, 1, true) then redis.call('HDEL', KEYS[2], id) end
    end
    redis.call('ZREM', KEYS[3], unpack(old))
  end
end
return {table.concat(out), stored or ''}
