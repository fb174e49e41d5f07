-- Read a fenced resource. KEYS[1] the resource hash.
-- Returns {} when nothing was written (fenced reads may have left a fence
-- alone), else {the last write's token, value}.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  return {}
end
if kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the fenced resource key holds a ' .. kind .. ', not a fenced resource')
end
local found = redis.call('HMGET', KEYS[1], 'fence', 'wfence', 'value')
if not found[1] then
  return redis.error_reply('FENCELOCK the fenced resource key holds a hash without a fence')
end
if not found[3] then
  return {}
end
return {found[2] or found[1], found[3]}
