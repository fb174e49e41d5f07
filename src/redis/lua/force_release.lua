-- Remove a lock whatever its holds (an admin operation). The fencing
-- counter stays: tokens keep increasing after a forced release.
-- KEYS[1] lock hash. Returns 1 removed, 0 no lock here. Data under the
-- name that is not a fencelock lock is left as it is and reported as an
-- error naming it, as inspect does. Waiters are told on
-- '<lock key>:released', as after a release.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return 0
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
if redis.call('HEXISTS', KEYS[1], ':owner') == 0 then
  return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return 1
