-- Start placing an order, in one round trip: claim the Idempotency-Key and read the cart.
-- KEYS[1] the key's record (same hash tag as the cart), KEYS[2] the cart hash.
-- ARGV[1] the "running" claim (JSON), ARGV[2] how long a claim lives (s).
-- Returns {'CLAIMED', cart exists (1|0), field, value, ...} when this request may go on,
-- else {'TAKEN', record} (the record is '' if it expired just now: try again).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  local out = {'CLAIMED', redis.call('EXISTS', KEYS[2])}
  for _, value in ipairs(redis.call('HGETALL', KEYS[2])) do
    table.insert(out, value)
  end
  return out
end
return {'TAKEN', redis.call('GET', KEYS[1]) or ''}
