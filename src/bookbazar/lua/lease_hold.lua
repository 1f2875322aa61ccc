-- Take or keep a lease: free -> ours; ours -> renewed; someone else's -> not ours.
-- KEYS[1] the lease. ARGV[1] our token, ARGV[2] how long it lasts (ms).
-- Returns 1 if we hold it now, else 0.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
