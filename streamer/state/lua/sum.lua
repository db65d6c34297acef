-- Windowed count or sum: hash "s" maps bucket -> total.
-- payload: {"b": [[bucket, value], ...], "int": true|false}
local S = P .. 's'
for _, op in ipairs(payload.b) do
  if payload.int then
    redis.call('HINCRBY', S, op[1], op[2])
  else
    redis.call('HINCRBYFLOAT', S, op[1], op[2])
  end
end
return finish()
