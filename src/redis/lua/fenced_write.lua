-- Write to a fenced resource: accepted only when the writer's token is at
-- least the highest token the resource has accepted, fenced reads'
-- included (see fenced_check_read.lua).
-- KEYS[1] the resource hash: field 'fence' (highest accepted token),
-- 'wfence' (highest accepted write token) and field 'value'. ARGV[1] the writer's token (canonical decimal), ARGV[2] the
-- value. Tokens are compared as decimal strings (length, then bytes): exact
-- for every u64, where Lua's numbers (doubles) are not.
-- Returns {'1', token} accepted, {'0', highest seen} rejected.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the fenced resource key holds a ' .. kind .. ', not a fenced resource')
end
local seen = redis.call('HGET', KEYS[1], 'fence')
if kind == 'hash' and not (seen == '0' or (seen and #seen <= 20 and string.match(seen, '^[1-9]%d*$'))) then
  return redis.error_reply('FENCELOCK the fenced resource key holds a hash without a valid fence field')
end
if seen and (#seen > #ARGV[1] or (#seen == #ARGV[1] and seen > ARGV[1])) then
  return {'0', seen}
end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'wfence', ARGV[1], 'value', ARGV[2])
return {'1', ARGV[1]}
