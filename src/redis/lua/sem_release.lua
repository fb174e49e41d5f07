-- Give a permit back: remove the hold from every slot of the semaphore
-- that has it (a node that answered late may have given it another slot
-- than the one it won; an undo does not know the slot).
-- KEYS[1] the semaphore's marker, KEYS[2 + i] slot i (same hash tag).
-- ARGV[1] owner, ARGV[2] hold id, ARGV[3] a slot to keep or -1 (a won
-- permit drops the other slots some nodes gave it), ARGV[4] '1' to tell a
-- waiter ('0' when undoing an acquire). The layout is sem_acquire.lua's.
-- Idempotent by hold id.
-- Returns 2 freed a slot, 0 the permit is not here.
-- The marker goes with the last permit; '<marker>:released' is announced.
local keep = 2 + tonumber(ARGV[3])
local freed = 0
for i = 2, #KEYS do
  if i ~= keep and redis.call('HGET', KEYS[i], ':owner') == ARGV[1] and
     redis.call('HEXISTS', KEYS[i], ARGV[2]) == 1 then
    redis.call('DEL', KEYS[i])
    freed = 2
  end
end
if freed == 0 then
  return 0
end
local left = false
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    left = true
    break
  end
end
if not left then
  redis.call('DEL', KEYS[1])
end
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return freed
