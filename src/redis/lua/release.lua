-- Remove one hold; delete the lock when it was the last.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id, ARGV[3] '1' to tell
-- waiters when this frees the lock ('0' when undoing a failed acquire,
-- which freed nothing anyone waited for).
-- Idempotent by hold id: releasing a hold that is absent touches nothing, so
-- undoing a nested acquire that never arrived cannot eat the outer hold.
-- Returns 2 lock freed, 1 hold removed but others remain, 0 hold not here.
-- Freeing the lock is announced on '<lock key>:released'.
local found = redis.call('HMGET', KEYS[1], ':owner', ARGV[2])
if found[1] ~= ARGV[1] or not found[2] then
  return 0
end
-- ':owner', ':token' and this hold: it was the last one.
if redis.call('HLEN', KEYS[1]) <= 3 then
  redis.call('DEL', KEYS[1])
  if ARGV[3] == '1' then
    redis.call('PUBLISH', KEYS[1] .. ':released', '')
  end
  return 2
end
redis.call('HDEL', KEYS[1], ARGV[2])
return 1
