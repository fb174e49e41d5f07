-- Raise a lagging fencing counter to the token being handed out.
-- KEYS[1] lock hash, KEYS[2] fencing counter. ARGV[1] owner, ARGV[2] token.
-- Counters only grow. Returns {counter after the call, 1 if the owner's lock
-- is on this node else 0, 1 if the counter did not exist (the node lost its
-- data or never saw the resource) else 0}. Only a node that holds the owner's lock may count
-- towards the quorum that makes the token final: elsewhere another acquire
-- may already have counted past this node before the raise arrived.
-- Where the owner's lock is here, its stored token is set to the final
-- token, so nested acquires answered by this node report that same token.
local target = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[2])
local missing = stored and 0 or 1
local current = tonumber(stored or '0')
if current < target then
  redis.call('SET', KEYS[2], ARGV[2])
  current = target
end
if redis.call('HGET', KEYS[1], ':owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], ':token', ARGV[2])
  return {current, 1, missing}
end
return {current, 0, missing}
