-- Read a fencing counter for a repair (docs/algorithm.md, section 15).
-- KEYS[1] the node's marker, KEYS[2] fencing counter.
-- Returns {1, counter} where the counter is trusted: the node kept its
-- marker and never lost data (a missing counter is 0), or it lost data and
-- the counter was written since by a repair; {0} where it is not.
local m = redis.call('HMGET', KEYS[1], 'id', 'reborn')
local stored = redis.call('GET', KEYS[2])
if not m[1] or (m[2] and not stored) then
  return {0}
end
return {1, tonumber(stored or '0')}
