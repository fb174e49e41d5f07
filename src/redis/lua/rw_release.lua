-- Remove one hold of a read-write lock; its root goes with its last hold,
-- the lock with its last root.
-- KEYS[1] lock hash. ARGV[1] owner, ARGV[2] hold id, ARGV[3] '1' to tell
-- waiters when this lets any of them in ('0' when undoing an acquire).
-- The layout is rw_acquire.lua's. Idempotent by hold id, as release.lua.
-- Returns 2 a root removed, 1 a nested hold removed, 0 hold not here.
-- Waiters are told on '<lock key>:released' when the write root goes or
-- the last root does (a reader leaving among others frees nobody).
if redis.replicate_commands then redis.replicate_commands() end
-- Hold ids name fields of the hash, never keys.
local id = ARGV[2]
local f = redis.call('HMGET', KEYS[1], ':kind', ':roots', ':wo', 'h:' .. id, 'o:' .. id,
  'n:' .. id, ':w')
if f[1] ~= 'rw' then
  return 0
end
-- The common cases, ending as the general path below would, in fewer
-- commands: the last hold of a first hold (a root) of this owner.
if f[4] == id and f[5] == ARGV[1] and f[6] == '1' then
  -- The only root, and no writer waiting: the lock goes.
  if f[2] == '1' and not f[3] then
    redis.call('DEL', KEYS[1])
    if ARGV[3] == '1' then
      redis.call('PUBLISH', KEYS[1] .. ':released', '')
    end
    return 2
  end
  -- A reader among other roots, with no waiting mark of its own to clear:
  -- it goes, and frees nobody.
  if tonumber(f[2]) > 1 and f[7] ~= id and not (ARGV[3] == '1' and f[3] == ARGV[1]) then
    redis.call('HDEL', KEYS[1], 'h:' .. id, 'o:' .. id, 'x:' .. id, 't:' .. id, 'n:' .. id)
    redis.call('HINCRBY', KEYS[1], ':roots', -1)
    return 2
  end
end
-- A release (not an undo) also clears this owner's waiting mark: a writer
-- that got in on a quorum left its mark on the nodes that refused it,
-- where it would otherwise keep readers out and the name in use until
-- the mark ran out. (An undo keeps it: the writer is still waiting.)
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], ':wo') == ARGV[1] then
  redis.call('HDEL', KEYS[1], ':wo', ':wx')
  if tonumber(redis.call('HGET', KEYS[1], ':roots') or '0') <= 0 then
    redis.call('DEL', KEYS[1])
  end
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
local root = redis.call('HGET', KEYS[1], 'h:' .. id)
if not root or redis.call('HGET', KEYS[1], 'o:' .. root) ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 'h:' .. id)
if redis.call('HINCRBY', KEYS[1], 'n:' .. root, -1) > 0 then
  return 1
end
redis.call('HDEL', KEYS[1], 'o:' .. root, 'x:' .. root, 't:' .. root, 'n:' .. root)
local freed = false
if redis.call('HGET', KEYS[1], ':w') == root then
  -- Readers that waited through this write get a chance before the next
  -- writer: every waiting mark goes, and a writer still waiting sets its
  -- mark again when it is next refused, which keeps later readers out.
  -- Without this, writers queued one behind the other kept readers out
  -- for as long as writers came (the checker saw 3 reads to 128 writes).
  redis.call('HDEL', KEYS[1], ':w', ':wo', ':wx')
  freed = true
end
local roots = redis.call('HINCRBY', KEYS[1], ':roots', -1)
-- With the last root gone, the key lives on only for a waiting writer's
-- mark, so that an idle name is free for any kind. With roots left its
-- expiry stays: it covers the longest of them already, and shortening it
-- to fit them would read the whole hash, which grows with the readers (an
-- expired root left behind is swept by the next acquire that looks).
if roots <= 0 then
  freed = true
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local wx = tonumber(redis.call('HGET', KEYS[1], ':wx') or '0')
  if wx <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('PEXPIRE', KEYS[1], wx - now)
  end
end
if freed and ARGV[3] == '1' then
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return 2
