-- Acquire one permit of a semaphore: the first free slot in the order the
-- client chose (the same order on every node, so that a quorum can agree).
-- KEYS[1] the semaphore's marker hash (at the name's lock key), KEYS[2] its
-- fencing counter (one for all slots), KEYS[3 + i] slot i (same hash tag).
-- ARGV[1] owner, ARGV[2] hold id, ARGV[3] how long the permit lives here
-- in ms (its ttl and the lock-delay), ARGV[4] permits,
-- ARGV[5] the slots in the client's order, comma-separated.
-- KEYS[#KEYS] the node's marker, ARGV[6] quarantine ms, ARGV[7] a new
-- incarnation id: see standing.lua, prepended.
-- The marker has ':kind' 'sem' and ':permits' N, and lives as long as its
-- longest permit. Slot i ('<marker>:permit:<i>') is a hash like an
-- exclusive lock's: ':owner', ':token' and the hold id.
-- Returns {1, counter, 1, slot} granted, {0, pttl} every slot taken (the
-- shortest remaining ttl), {4, kind} the name is in use as another kind
-- (1 lock, 2 rwlock), {6, permits} the semaphore is in use with another
-- number of permits (while any of its permits is live), {7, ..} or {8, ..}
-- this node may not grant (standing.lua).
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
local permits = tonumber(ARGV[4])
if kind == 'hash' then
  local k = redis.call('HGET', KEYS[1], ':kind')
  if k == 'rw' then return {4, 2} end
  if k ~= 'sem' then
    if redis.call('HEXISTS', KEYS[1], ':owner') == 1 then return {4, 1} end
    return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
  end
  local theirs = tonumber(redis.call('HGET', KEYS[1], ':permits'))
  -- The marker lives exactly as long as the semaphore's last permit, so
  -- another count is in use: refused, not mixed.
  if theirs ~= permits then return {6, theirs} end
end
local refused = standing()
if refused then return refused end
local free = nil
local shortest = -1
for s in string.gmatch(ARGV[5], '%d+') do
  local i = 3 + tonumber(s)
  local owner = redis.call('HGET', KEYS[i], ':owner')
  if owner == ARGV[1] and redis.call('HEXISTS', KEYS[i], ARGV[2]) == 1 then
    -- The same request applied before (a retry): answer as the first time.
    return {1, tonumber(redis.call('HGET', KEYS[i], ':token')), 1, tonumber(s)}
  end
  if owner then
    local pttl = redis.call('PTTL', KEYS[i])
    if shortest < 0 or pttl < shortest then shortest = pttl end
  elseif not free and redis.call('EXISTS', KEYS[i]) == 0 then
    free = s
  end
end
if not free then
  return {0, shortest}
end
local token = redis.call('INCR', KEYS[2])
local i = 3 + tonumber(free)
redis.call('HSET', KEYS[i], ':owner', ARGV[1], ':token', token, ARGV[2], '1')
redis.call('PEXPIRE', KEYS[i], ARGV[3])
redis.call('HSET', KEYS[1], ':kind', 'sem', ':permits', permits)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, token, 1, tonumber(free)}
