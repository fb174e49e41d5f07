-- End the quarantine of a node of a new cluster: one acquire found every
-- node that answered in quarantine, a quorum of them, so nothing it
-- reached remembers anything (docs/algorithm.md, section 15).
-- KEYS[1] the node's marker. ARGV[1] the incarnation id the node answered
-- that acquire with.
-- Returns 1 done, 0 not (wiped again since).
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 'until', 'reborn')
return 1
