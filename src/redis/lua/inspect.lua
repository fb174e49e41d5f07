-- Read one lock as this node stores it.
-- KEYS[1] lock hash. Returns {} when there is no lock, else
-- {owner, token, holds, pttl}.
local owner = redis.call('HGET', KEYS[1], ':owner')
if not owner then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
  end
  return {}
end
return {owner, redis.call('HGET', KEYS[1], ':token'), redis.call('HLEN', KEYS[1]) - 2, redis.call('PTTL', KEYS[1])}
