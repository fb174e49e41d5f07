-- Raise a lagging fencing counter to the token being handed out.
-- KEYS[1] lock hash, KEYS[2] fencing counter. ARGV[1] owner, ARGV[2] token.
-- Counters only grow. When the owner's lock is here, its stored token is
-- raised too, so a nested acquire answered by this node reports the same token.
-- Returns the counter after the call (>= ARGV[2]).
local target = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < target then
  redis.call('SET', KEYS[2], ARGV[2])
  current = target
end
if redis.call('HGET', KEYS[1], ':owner') == ARGV[1] then
  if tonumber(redis.call('HGET', KEYS[1], ':token')) < target then
    redis.call('HSET', KEYS[1], ':token', ARGV[2])
  end
end
return current
