-- Raise a lagging fencing counter to the token being handed out.
-- KEYS[1] lock hash (for a permit, its slot's), KEYS[2] fencing counter,
-- KEYS[3] the node's marker.
-- ARGV[1] owner, ARGV[2] token, ARGV[3] the id of the first hold being
-- granted.
-- Counters only grow. Returns {counter after the call, 1 if that hold is
-- on this node else 0, 1 if the counter did not exist (the node lost its
-- data or never saw the resource) else 0}. Only a node that holds the
-- hold may count towards the quorum that makes the token final: elsewhere
-- another acquire may already have counted past this node before the
-- raise arrived. Where the hold is here, its stored token is set to the
-- final token, so nested acquires answered by this node report that same
-- token. A read-write lock keeps a token per first hold ('t:<id>').
local target = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[2])
local missing = stored and 0 or 1
-- A counter this node lost (it has no marker, or lost data and this
-- counter has not been repaired) is unknown: never created here, never
-- counted (docs/algorithm.md, section 15). No hold can be here either.
local m = redis.call('HMGET', KEYS[3], 'id', 'reborn')
if not m[1] or (m[2] and not stored) then
  return {0, 0, 1}
end
local current = tonumber(stored or '0')
if current < target then
  redis.call('SET', KEYS[2], ARGV[2])
  current = target
end
local id = ARGV[3]
if redis.call('HGET', KEYS[1], ':kind') == 'rw' then
  if redis.call('HGET', KEYS[1], 'o:' .. id) == ARGV[1] then
    redis.call('HSET', KEYS[1], 't:' .. id, ARGV[2])
    return {current, 1, missing}
  end
  return {current, 0, missing}
end
if redis.call('HGET', KEYS[1], ':owner') == ARGV[1] and redis.call('HEXISTS', KEYS[1], id) == 1 then
  redis.call('HSET', KEYS[1], ':token', ARGV[2])
  return {current, 1, missing}
end
return {current, 0, missing}
