-- Remove one hold; delete the lock when it was the last.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id.
-- Idempotent by hold id: releasing a hold that is absent touches nothing, so
-- undoing a nested acquire that never arrived cannot eat the outer hold.
-- Returns 2 lock freed, 1 hold removed but others remain, 0 hold not here.
-- Freeing the lock is announced on '<lock key>:released' for waiters.
local found = redis.call('HMGET', KEYS[1], ':owner', ARGV[2])
if found[1] ~= ARGV[1] or not found[2] then
  return 0
end
-- ':owner', ':token' and this hold: it was the last one.
if redis.call('HLEN', KEYS[1]) <= 3 then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
  return 2
end
redis.call('HDEL', KEYS[1], ARGV[2])
return 1
