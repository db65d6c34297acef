-- Approximate distinct entities: one HyperLogLog per bucket ("h:<bucket>").
-- payload: {"b": [[bucket, [key, ...]], ...]}
for _, op in ipairs(payload.b) do
  redis.call('PFADD', P .. 'h:' .. op[1], unpack(op[2]))
end
return finish()
