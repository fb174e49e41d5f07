-- Write a repaired fencing counter into a node that lost its data
-- (docs/algorithm.md, section 15).
-- KEYS[1] the node's marker, KEYS[2] fencing counter. ARGV[1] the
-- incarnation id the node answered with when its counter was found
-- missing, ARGV[2] the highest trusted counter a quorum answered (read
-- after that answer).
-- Applies only to that incarnation, once its quarantine is over, and only
-- raises. Returns 1 applied, 0 not (the node was wiped again since, or is
-- not the node that asked).
if redis.replicate_commands then redis.replicate_commands() end
local m = redis.call('HMGET', KEYS[1], 'id', 'until')
if m[1] ~= ARGV[1] then
  return 0
end
if m[2] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(m[2]) > now then return 0 end
  redis.call('HDEL', KEYS[1], 'until')
end
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if current < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
