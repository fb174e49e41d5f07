-- Extend a permit in its slot.
-- KEYS[1] the slot's hash, KEYS[2] the semaphore's marker. ARGV[1] owner,
-- ARGV[2] hold id, ARGV[3] how long the permit lives here from now in ms
-- (the ttl and the lock-delay). The layout is sem_acquire.lua's.
-- Only lengthens; the marker lives as long as the longest permit.
-- Returns 1 extended, 0 the permit is not here.
if redis.call('HGET', KEYS[1], ':owner') ~= ARGV[1] then
  return 0
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return 0
end
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
