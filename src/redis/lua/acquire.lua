-- Acquire one hold on a lock.
-- KEYS[1] lock hash, KEYS[2] fencing counter (same hash tag).
-- ARGV[1] owner, ARGV[2] hold id, ARGV[3] how long the lock lives here in
-- ms (its ttl and the lock-delay, which keeps a vanished holder's name
-- taken; a release deletes it at once), ARGV[4] max holds per owner,
-- ARGV[5] parent hold id for a nested acquire ('' for a first one).
-- KEYS[3] the node's marker, ARGV[6] quarantine ms, ARGV[7] a new
-- incarnation id: see standing.lua, prepended.
-- The hash has ':owner' and ':token' plus one field per hold id, so a retried
-- or late-arriving acquire never counts twice.
-- Returns {1, token, holds} granted, {0, pttl} held (by anyone, for a first
-- acquire), {2, holds} reentrancy limit reached, {3} parent hold not here,
-- {4, kind} the name is in use as another kind (2 rwlock, 3 semaphore),
-- {7, ..} or {8, ..} this node may not grant a first hold (standing.lua).
-- Data of another kind at the lock key is an error naming it, not a lock.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
if ARGV[5] == '' then
  local refused = standing()
  if refused then return refused end
  if kind == 'none' then
    local token = redis.call('INCR', KEYS[2])
    redis.call('HSET', KEYS[1], ':owner', ARGV[1], ':token', token, ARGV[2], '1')
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {1, token, 1}
  end
  local owner = redis.call('HGET', KEYS[1], ':owner')
  if not owner then
    local other = redis.call('HGET', KEYS[1], ':kind')
    if other == 'rw' then return {4, 2} end
    if other == 'sem' then return {4, 3} end
    return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
  end
  -- The same request applied before (a retry): answer as the first time.
  if owner == ARGV[1] and redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then
    return {1, tonumber(redis.call('HGET', KEYS[1], ':token')), redis.call('HLEN', KEYS[1]) - 2}
  end
  -- Any other lock, even a stale one of this owner (a release that missed
  -- this node), refuses a first acquire: it must count afresh elsewhere.
  return {0, redis.call('PTTL', KEYS[1])}
end
-- Nested: only inside the parent hold.
local owner = redis.call('HGET', KEYS[1], ':owner')
if owner ~= ARGV[1] or redis.call('HEXISTS', KEYS[1], ARGV[5]) == 0 then
  return {3}
end
local holds = redis.call('HLEN', KEYS[1]) - 2
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  if holds >= tonumber(ARGV[4]) then
    return {2, holds}
  end
  redis.call('HSET', KEYS[1], ARGV[2], '1')
  holds = holds + 1
end
-- A nested hold never shortens the outer one's lease.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, tonumber(redis.call('HGET', KEYS[1], ':token')), holds}
