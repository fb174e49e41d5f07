-- Prepended to every script that grants a first hold (docs/algorithm.md,
-- section 15). A node that lost its data lost its marker too; until it is
-- safe again it grants nothing and its missing counters count for nothing.
-- The node's marker is the last key, KEYS[#KEYS]; the fencing counter is
-- KEYS[2]; the last two arguments are the quarantine in ms and an
-- incarnation id to mark the node with. standing() returns nil when this
-- node may grant, else the refusal: {7, ms left in quarantine, 1 if this
-- call marked the node, incarnation id}, or {8, incarnation id} for a node
-- back from its quarantine that has no counter for this resource yet (a
-- repair must write it first).
if redis.replicate_commands then redis.replicate_commands() end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function standing()
  local quarantine_ms, new_id = tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]
  local m = redis.call('HMGET', KEYS[#KEYS], 'id', 'until', 'reborn')
  if not m[1] then
    local now = now_ms()
    redis.call('HSET', KEYS[#KEYS], 'id', new_id, 'since', string.format('%.0f', now),
      'until', string.format('%.0f', now + quarantine_ms), 'reborn', '1')
    return {7, quarantine_ms, 1, tonumber(new_id)}
  end
  if m[2] then
    local left = tonumber(m[2]) - now_ms()
    if left > 0 then return {7, left, 0, tonumber(m[1])} end
    redis.call('HDEL', KEYS[#KEYS], 'until')
  end
  if m[3] and redis.call('EXISTS', KEYS[2]) == 0 then
    return {8, tonumber(m[1])}
  end
  return nil
end
