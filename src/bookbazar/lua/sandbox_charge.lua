-- Record what the buyer did on the sandbox checkout page, once per intent: a succeeded
-- or refunded intent keeps its first event (a second Pay changes nothing).
-- KEYS[1] the intent's ledger hash. ARGV[1] outcome ('succeeded' | 'failed'),
-- ARGV[2] event id, ARGV[3] amount, ARGV[4] currency, ARGV[5] ledger TTL (ms).
-- Returns {status, eventId} as recorded.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'refunded' then
  return {status, redis.call('HGET', KEYS[1], 'event')}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'event', ARGV[2], 'amount', ARGV[3],
  'currency', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {ARGV[1], ARGV[2]}
