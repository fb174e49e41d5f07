-- Read a fenced resource under a read hold's token: allowed only when the
-- token is at least the highest write token the resource has accepted, and
-- then it raises the resource's fence to the token, so that a writer whose
-- token is below this reader's cannot write after the read
-- (docs/algorithm.md, section 12).
-- KEYS[1] the resource hash: 'fence' (highest token accepted, reads
-- included), 'wfence' (highest write token; absent on resources written
-- before reads were fenced, where 'fence' is it) and 'value'. ARGV[1] the
-- reader's token (canonical decimal). Tokens compare as decimal strings.
-- Returns {'1'} allowed with nothing written yet, {'1', wfence, value}
-- allowed, {'0', wfence} refused.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply('WRONGTYPE fencelock: the fenced resource key holds a ' .. kind .. ', not a fenced resource')
end
local function valid(t)
  return t == '0' or (t and #t <= 20 and string.match(t, '^[1-9]%d*$'))
end
local function below(a, b)
  return #a < #b or (#a == #b and a < b)
end
local found = redis.call('HMGET', KEYS[1], 'fence', 'wfence', 'value')
local fence, value = found[1], found[3]
-- Written before reads were fenced: every accepted token was a write's.
local wfence = found[2] or (value and fence)
if kind == 'hash' and not (valid(fence) and (not wfence or valid(wfence))) then
  return redis.error_reply('FENCELOCK the fenced resource key holds a hash without a valid fence field')
end
local token = ARGV[1]
if wfence and value and below(token, wfence) then
  return {'0', wfence}
end
if not fence or below(fence, token) then
  if wfence and not found[2] then
    redis.call('HSET', KEYS[1], 'wfence', wfence)
  end
  redis.call('HSET', KEYS[1], 'fence', token)
end
if not value then
  return {'1'}
end
return {'1', wfence, value}
