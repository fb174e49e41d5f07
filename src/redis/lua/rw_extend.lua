-- Extend a read or write hold's root through one of its holds.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id, ARGV[3] how long the
-- root lives here from now in ms (the ttl and the lock-delay), ARGV[4]
-- 'r' when the hold is now a read hold (after a downgrade).
-- The layout is rw_acquire.lua's. Only lengthens; a root whose lease ran
-- out is lost even while the KEYS[1] lives on for others.
-- A first read hold still marked as the writer here missed its downgrade
-- on this node: the extend completes it. (A read hold nested in a write
-- hold is no downgrade: its root stays the writer.)
-- Returns 1 extended, 0 the hold is not here (or its lease ran out).
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('HGET', KEYS[1], ':kind') ~= 'rw' then
  return 0
end
-- Hold ids name fields of the hash, never keys.
local id = ARGV[2]
local root = redis.call('HGET', KEYS[1], 'h:' .. id)
if not root or redis.call('HGET', KEYS[1], 'o:' .. root) ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local x = tonumber(redis.call('HGET', KEYS[1], 'x:' .. root))
if x <= now then
  return 0
end
local wanted = now + tonumber(ARGV[3])
local pttl = redis.call('PTTL', KEYS[1])
if x < wanted then
  -- The key's expiry first. A node at maxmemory refuses a script's first
  -- write if it may take memory (HSET), but not PEXPIRE, and lets every
  -- write after a first one through (refusing then would break the
  -- script's atomicity): so a hold stays renewable on a full node, as a
  -- lock's or a permit's is. The HSET only overwrites a field.
  redis.call('PEXPIRE', KEYS[1], math.max(pttl, wanted - now))
  redis.call('HSET', KEYS[1], 'x:' .. root, wanted)
elseif pttl < x - now then
  redis.call('PEXPIRE', KEYS[1], x - now)
end
if ARGV[4] == 'r' and root == id and redis.call('HGET', KEYS[1], ':w') == root then
  redis.call('HDEL', KEYS[1], ':w')
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return 1
