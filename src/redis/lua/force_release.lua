-- Remove a lock whatever its holds (an admin operation). The fencing
-- counter stays: tokens keep increasing after a forced release.
-- KEYS[1] lock hash. Returns 1 removed, 0 no lock here. Data under the
-- name that is not a fencelock lock is left alone. Waiters are told on
-- '<lock key>:released', as after a release.
if redis.call('HEXISTS', KEYS[1], ':owner') == 0 then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return 1
