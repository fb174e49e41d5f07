-- Extend a lock through one of its holds.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id, ARGV[3] ttl in ms.
-- Returns 1 extended, 0 the hold is not here (expired, released, taken over).
if redis.call('HGET', KEYS[1], ':owner') ~= ARGV[1] then
  return 0
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
