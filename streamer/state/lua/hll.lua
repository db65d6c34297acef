-- Approximate distinct entities: one HyperLogLog per bucket ("h:<bucket>").
-- payload: {"b": [[bucket, [key, ...]], ...]}
-- A bucket's keys go in PFADDs of at most 1,000: unpack() has a stack limit
-- (about 8,000 values), which a batch's distinct keys of one bucket can pass.
for _, op in ipairs(payload.b) do
  local key, members = P .. 'h:' .. op[1], op[2]
  for i = 1, #members, 1000 do
    redis.call('PFADD', key, unpack(members, i, math.min(i + 999, #members)))
  end
end
return finish()
