-- Acquire one read or write hold on a read-write lock.
-- KEYS[1] lock hash, KEYS[2] fencing counter (same hash tag).
-- ARGV[1] owner, ARGV[2] hold id, ARGV[3] how long the hold lives here in
-- ms (its ttl and the lock-delay), ARGV[4] max holds per root, ARGV[5]
-- parent hold id for a nested acquire ('' for a first one), ARGV[6] 'r'
-- or 'w', ARGV[7] '1' when a refused writer will try again, ARGV[8] how
-- long its waiting mark lives in ms (the ttl alone: it holds nothing).
-- KEYS[3] the node's marker, ARGV[9] quarantine ms, ARGV[10] a new
-- incarnation id: see standing.lua, prepended.
-- The hash: ':kind' 'rw', ':roots' live first holds, ':w' the write root,
-- ':wo'/':wx' a waiting writer's owner and until when (server ms); per
-- first hold (root) R: 'o:R' owner, 'x:R' expiry (server ms, lock-delay
-- included, so that a sweep frees a vanished holder's root no earlier
-- than the key would go), 't:R' token, 'n:R' holds; per hold H: 'h:H' its
-- root. Each root expires on its own (readers come and go); the KEYS[1]
-- lives as long as the last of them.
-- Returns {1, token, holds} granted, {0, pttl} refused, {2, holds}
-- reentrancy limit, {3} parent hold not here, {4, kind} the name is in use
-- as another kind (1 lock, 3 semaphore), {7, ..} or {8, ..} this node may
-- not grant a first hold (standing.lua).
if redis.replicate_commands then redis.replicate_commands() end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
local owner, id, parent, mode = ARGV[1], ARGV[2], ARGV[5], ARGV[6]
-- What the general path looks at, read in one call (and again after a
-- sweep changed it): kind, roots, writer, waiting writer and its deadline,
-- this hold's root if the request was applied before.
local state = {}
local function look()
  state = redis.call('HMGET', KEYS[1], ':kind', ':roots', ':w', ':wo', ':wx', 'h:' .. id)
end
if kind == 'hash' then
  look()
  local k = state[1]
  if k == 'sem' then return {4, 3} end
  if k ~= 'rw' then
    if redis.call('HEXISTS', KEYS[1], ':owner') == 1 then return {4, 1} end
    return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
  end
end
if parent == '' then
  local refused = standing()
  if refused then return refused end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])

local function lengthen(until_ms)
  if redis.call('PTTL', KEYS[1]) < until_ms - now then
    redis.call('PEXPIRE', KEYS[1], until_ms - now)
  end
end

-- A new first hold (root) beside `roots` others, with a token by the
-- fencing rule; `wo` is the waiting writer's owner, if any.
local function grant(roots, wo)
  local token = redis.call('INCR', KEYS[2])
  local fields = {':kind', 'rw', ':roots', roots + 1, 'o:' .. id, owner, 'x:' .. id, now + ttl,
    't:' .. id, token, 'n:' .. id, 1, 'h:' .. id, id}
  if mode == 'w' then
    fields[#fields + 1] = ':w'
    fields[#fields + 1] = id
    if wo == owner then redis.call('HDEL', KEYS[1], ':wo', ':wx') end
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  return token
end

-- A name nobody holds (the common case): nothing to purge, to wait behind
-- or to answer again, and the key's expiry is this root's.
if kind == 'none' and parent == '' then
  local token = grant(0, false)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, token, 1}
end

-- Roots whose lease ran out are gone, with their holds.
local function purge()
  local fields = redis.call('HGETALL', KEYS[1])
  local dead = {}
  for i = 1, #fields, 2 do
    local f = fields[i]
    if string.sub(f, 1, 2) == 'x:' and tonumber(fields[i + 1]) <= now then
      dead[string.sub(f, 3)] = true
    end
  end
  if next(dead) == nil then return false end
  for i = 1, #fields, 2 do
    local f = fields[i]
    local p = string.sub(f, 1, 2)
    if (p == 'h:' and dead[fields[i + 1]]) or
       ((p == 'o:' or p == 'x:' or p == 't:' or p == 'n:') and dead[string.sub(f, 3)]) then
      redis.call('HDEL', KEYS[1], f)
    end
  end
  for root in pairs(dead) do
    redis.call('HINCRBY', KEYS[1], ':roots', -1)
    if redis.call('HGET', KEYS[1], ':w') == root then redis.call('HDEL', KEYS[1], ':w') end
  end
  return true
end

-- Sweeping reads the whole hash, which grows with the readers: a first
-- read hold skips it unless a writer's root may have run out (only that
-- could change its answer), and so do not sweep a write, a nested hold
-- (its root may be dead) or a repeated request (below). About one in 16
-- reads sweeps anyway, so that crashed readers cannot pile up while
-- others keep the name alive.
local swept = false
local function sweep()
  if kind == 'hash' and not swept then
    swept = true
    if purge() then look() end
  end
end
if mode == 'w' or parent ~= '' or state[3] or tonumber(t[2]) % 16 == 0 then
  sweep()
end

if parent ~= '' then
  local root = redis.call('HGET', KEYS[1], 'h:' .. parent)
  if not root or redis.call('HGET', KEYS[1], 'o:' .. root) ~= owner then return {3} end
  if mode == 'w' and redis.call('HGET', KEYS[1], ':w') ~= root then return {3} end
  local holds = tonumber(redis.call('HGET', KEYS[1], 'n:' .. root))
  if redis.call('HEXISTS', KEYS[1], 'h:' .. id) == 0 then
    if holds >= tonumber(ARGV[4]) then return {2, holds} end
    redis.call('HSET', KEYS[1], 'h:' .. id, root)
    holds = redis.call('HINCRBY', KEYS[1], 'n:' .. root, 1)
  end
  -- A nested hold never shortens the outer one's lease.
  local x = math.max(tonumber(redis.call('HGET', KEYS[1], 'x:' .. root)), now + ttl)
  redis.call('HSET', KEYS[1], 'x:' .. root, x)
  lengthen(x)
  return {1, tonumber(redis.call('HGET', KEYS[1], 't:' .. root)), holds}
end

-- The same request applied before (a retry): answer as the first time,
-- if its root is still live.
if state[6] and not swept then
  sweep()
end
local mine = state[6]
if mine then
  return {1, tonumber(redis.call('HGET', KEYS[1], 't:' .. mine)), tonumber(redis.call('HGET', KEYS[1], 'n:' .. mine))}
end
local roots = tonumber(state[2] or '0')
local writer = state[3] and true or false
local wo = state[4]
local waiter = wo and wo ~= owner and tonumber(state[5]) > now
if (mode == 'w' and roots > 0) or (mode == 'r' and (writer or waiter)) then
  -- A writer that will try again keeps new readers out meanwhile.
  if mode == 'w' and ARGV[7] == '1' and not waiter then
    local wait = tonumber(ARGV[8])
    redis.call('HSET', KEYS[1], ':wo', owner, ':wx', now + wait)
    lengthen(now + wait)
  end
  local pttl = redis.call('PTTL', KEYS[1])
  return {0, pttl}
end
local token = grant(roots, wo)
lengthen(now + ttl)
return {1, token, 1}
