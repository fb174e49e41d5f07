-- Remove one hold; delete the lock when it was the last.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id.
-- Idempotent by hold id: releasing a hold that is absent touches nothing, so
-- undoing a nested acquire that never arrived cannot eat the outer hold.
-- Returns 2 lock freed, 1 hold removed but others remain, 0 hold not here.
-- Freeing the lock is announced on '<lock key>:released' for waiters.
if redis.call('HGET', KEYS[1], ':owner') ~= ARGV[1] then
  return 0
end
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then
  return 0
end
if redis.call('HLEN', KEYS[1]) <= 2 then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
  return 2
end
return 1
