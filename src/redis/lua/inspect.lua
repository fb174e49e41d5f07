-- Read one lock, read-write lock or semaphore as this node stores it.
-- KEYS[1] lock hash (a semaphore's marker), KEYS[2 + i] a semaphore's
-- slot i when the caller knows the count. Returns {} when there is
-- nothing, else one group of six values per holder: owner, token, holds,
-- pttl, kind ('lock', 'write', 'read' or 'permit:<permits>') and slot (-1
-- but for a permit); a writer comes first. A semaphore asked about
-- without its slots answers {permits}: ask again with them. Data of another kind at the key
-- is an error naming it.
if redis.replicate_commands then redis.replicate_commands() end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return {}
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the lock key holds a ' .. kind .. ', not a fencelock lock')
end
local owner = redis.call('HGET', KEYS[1], ':owner')
if owner then
  return {owner, redis.call('HGET', KEYS[1], ':token'), redis.call('HLEN', KEYS[1]) - 2, redis.call('PTTL', KEYS[1]), 'lock', -1}
end
local what = redis.call('HGET', KEYS[1], ':kind')
local out = {}
if what == 'rw' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local writer = redis.call('HGET', KEYS[1], ':w')
  local fields = redis.call('HGETALL', KEYS[1])
  local roots = {}
  for i = 1, #fields, 2 do
    local f = fields[i]
    if string.sub(f, 1, 2) == 'x:' and tonumber(fields[i + 1]) > now then
      local root = string.sub(f, 3)
      if root == writer then table.insert(roots, 1, root) else table.insert(roots, root) end
    end
  end
  for _, root in ipairs(roots) do
    local h = redis.call('HMGET', KEYS[1], 'o:' .. root, 't:' .. root, 'n:' .. root, 'x:' .. root)
    table.insert(out, h[1])
    table.insert(out, h[2])
    table.insert(out, h[3])
    table.insert(out, tonumber(h[4]) - now)
    table.insert(out, root == writer and 'write' or 'read')
    table.insert(out, -1)
  end
  return out
end
if what == 'sem' then
  local permits = tonumber(redis.call('HGET', KEYS[1], ':permits'))
  if #KEYS ~= permits + 1 then
    return {permits}
  end
  for i = 2, #KEYS do
    local o = redis.call('HGET', KEYS[i], ':owner')
    if o then
      table.insert(out, o)
      table.insert(out, redis.call('HGET', KEYS[i], ':token'))
      table.insert(out, 1)
      table.insert(out, redis.call('PTTL', KEYS[i]))
      table.insert(out, 'permit:' .. permits)
      table.insert(out, i - 2)
    end
  end
  return out
end
return redis.error_reply('FENCELOCK lock key holds data that is not a fencelock lock')
