-- Extend many holds in one call: for each, exactly what extend.lua,
-- rw_extend.lua or sem_extend.lua does for it alone (see those files).
-- ARGV, four per hold: kind ('l' lock, 'r' read, 'w' write, 'p' permit),
-- owner, hold id, how long the lock lives here from now in ms (the ttl
-- and the lock-delay). KEYS, the holds' keys in the same order: one per
-- lock, read or write hold (its lock hash), two per permit (its slot's
-- hash, the semaphore's marker).
-- Returns one reply per hold, in order: 1 extended, 0 not here, or the
-- text of the error that hold's extend raised (a key of the wrong type, a
-- malformed hash). Each hold runs under pcall, so one hold in error fails
-- alone, as its own extend would, and never the rest of the batch; what it
-- did before the error only lengthened its own keys.
-- A hold's keys are only ever lengthened, never created: a released hold
-- stays released.
if redis.replicate_commands then redis.replicate_commands() end

local function extend_lock(k, owner, id, ttl)
  if redis.call('HGET', KEYS[k], ':owner') ~= owner then
    return 0
  end
  if redis.call('HEXISTS', KEYS[k], id) == 0 then
    return 0
  end
  if redis.call('PTTL', KEYS[k]) < ttl then
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
  return 1
end

local function extend_permit(k, owner, id, ttl)
  if extend_lock(k, owner, id, ttl) == 0 then
    return 0
  end
  local m = k + 1
  if redis.call('PTTL', KEYS[m]) < ttl then
    redis.call('PEXPIRE', KEYS[m], ttl)
  end
  return 1
end

-- One clock reading for the whole call: a script runs atomically, so it
-- is the moment every hold here is extended.
local now

local function extend_rw(k, owner, id, ttl, kind)
  if redis.call('HGET', KEYS[k], ':kind') ~= 'rw' then
    return 0
  end
  -- Hold ids name fields of the hash, never keys.
  local root = redis.call('HGET', KEYS[k], 'h:' .. id)
  if not root or redis.call('HGET', KEYS[k], 'o:' .. root) ~= owner then
    return 0
  end
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local x = tonumber(redis.call('HGET', KEYS[k], 'x:' .. root))
  if x <= now then
    return 0
  end
  local wanted = now + ttl
  local pttl = redis.call('PTTL', KEYS[k])
  if x < wanted then
    -- The expiry first, so a full node lets the HSET through (see
    -- rw_extend.lua).
    redis.call('PEXPIRE', KEYS[k], math.max(pttl, wanted - now))
    redis.call('HSET', KEYS[k], 'x:' .. root, wanted)
  elseif pttl < x - now then
    redis.call('PEXPIRE', KEYS[k], x - now)
  end
  if kind == 'r' and root == id and redis.call('HGET', KEYS[k], ':w') == root then
    redis.call('HDEL', KEYS[k], ':w')
    redis.call('PUBLISH', KEYS[k] .. ':released', '')
  end
  return 1
end

-- An error raised by redis.call is a table with an err field; one the
-- Lua runtime raises (arithmetic on a missing field) is a string.
local function failure(e)
  if type(e) == 'table' and e.err then
    return e.err
  end
  return tostring(e)
end

local replies = {}
local k = 1
for a = 1, #ARGV, 4 do
  local kind = ARGV[a]
  local owner = ARGV[a + 1]
  local id = ARGV[a + 2]
  local ttl = tonumber(ARGV[a + 3])
  local ok, reply
  if kind == 'p' then
    ok, reply = pcall(extend_permit, k, owner, id, ttl)
    k = k + 2
  elseif kind == 'l' then
    ok, reply = pcall(extend_lock, k, owner, id, ttl)
    k = k + 1
  else
    ok, reply = pcall(extend_rw, k, owner, id, ttl, kind)
    k = k + 1
  end
  if ok then
    replies[#replies + 1] = reply
  else
    replies[#replies + 1] = failure(reply)
  end
end
return replies
