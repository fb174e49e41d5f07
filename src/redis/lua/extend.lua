-- Extend a lock through one of its holds.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id, ARGV[3] how long the
-- lock lives here from now in ms (the ttl and the lock-delay).
-- Only ever lengthens the expiry: the lock is shared by all of the owner's
-- holds, and one nested hold asking for less must not cut the others short.
-- Returns 1 extended (or already long enough), 0 the hold is not here.
if redis.call('HGET', KEYS[1], ':owner') ~= ARGV[1] then
  return 0
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return 0
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
