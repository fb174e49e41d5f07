-- Read one lock as this node stores it.
-- KEYS[1] lock hash. Returns {} when there is no lock, else
-- {owner, token, holds, pttl}. Data of another kind at the key is an error
-- naming it.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return {}
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
local owner = redis.call('HGET', KEYS[1], ':owner')
if not owner then
  return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
end
return {owner, redis.call('HGET', KEYS[1], ':token'), redis.call('HLEN', KEYS[1]) - 2, redis.call('PTTL', KEYS[1])}
