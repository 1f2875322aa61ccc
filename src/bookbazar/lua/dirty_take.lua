-- Take up to ARGV[3] members of a "due at" zset whose time has come, holding each under a
-- lease: its score moves to ARGV[2] (the lease's end), so no other taker gets it until
-- then, and a new change (ZADD LT) brings it due again.
-- KEYS[1] the zset. ARGV[1] now (ms), ARGV[2] lease end (ms), ARGV[3] how many.
-- Returns the members taken.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
