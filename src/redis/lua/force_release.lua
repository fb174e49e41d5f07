-- Remove a lock, read-write lock or semaphore whatever its holds (an admin
-- operation). The fencing counter stays: tokens keep increasing after a
-- forced release.
-- KEYS[1] lock hash (a semaphore's marker), KEYS[2 + i] a semaphore's
-- slot i when the caller knows the count. Returns 1 removed, 0 nothing
-- here, -permits for a semaphore asked about without its slots (ask again
-- with them). Data under the name that is not fencelock's is left as it is and
-- reported as an error naming it, as inspect does. Waiters are told on
-- '<lock key>:released', as after a release.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return 0
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
local what = redis.call('HGET', KEYS[1], ':kind')
if redis.call('HEXISTS', KEYS[1], ':owner') == 0 and what ~= 'rw' and what ~= 'sem' then
  return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
end
if what == 'sem' then
  local permits = tonumber(redis.call('HGET', KEYS[1], ':permits'))
  if #KEYS ~= permits + 1 then
    return -permits
  end
  for i = 2, #KEYS do
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return 1
