-- Read a fenced resource. KEYS[1] the resource hash.
-- Returns {} when nothing was written, else {fence, value}.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return {}
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the fenced resource key holds a ' .. kind .. ', not a fenced resource')
end
local found = redis.call('HMGET', KEYS[1], 'fence', 'value')
if not found[1] or not found[2] then
  return redis.error_reply('FENCELOCK the fenced resource key holds a hash without a fence and a value')
end
return found
