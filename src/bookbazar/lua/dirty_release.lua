-- Let go of members taken by dirty_take.lua once their work is done: each is removed
-- only if its score is still the lease's (a change meanwhile made it due again: kept).
-- KEYS[1] the zset. ARGV[1] the lease end the members were taken with, ARGV[2..] members.
-- Returns how many were removed.
local removed = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[1] then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
