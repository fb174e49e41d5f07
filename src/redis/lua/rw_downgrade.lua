-- Turn a write root into a read root, keeping its token and lease.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] the root's hold id.
-- The layout is rw_acquire.lua's. Idempotent: a root that is already a
-- reader here answers as if it had just been turned.
-- Returns 1 done, 0 the hold is not here (or its lease ran out).
-- Waiting readers are told on '<lock key>:released'.
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('HGET', KEYS[1], ':kind') ~= 'rw' then
  return 0
end
local id = ARGV[2]
if redis.call('HGET', KEYS[1], 'o:' .. id) ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(redis.call('HGET', KEYS[1], 'x:' .. id)) <= now then
  return 0
end
if redis.call('HGET', KEYS[1], ':w') == id then
  redis.call('HDEL', KEYS[1], ':w')
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return 1
