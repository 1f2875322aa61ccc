-- End one order's reservation, once. Idempotent: a second call changes nothing.
-- KEYS[1] reservation hash, KEYS[2] reservation index, KEYS[3] tombstone.
-- ARGV[1] orderId, ARGV[2] 'released' (units go back to the counters) or 'converted'
-- (units were sold: on-hand stock fell in PostgreSQL, so availability is unchanged),
-- ARGV[3] tombstone TTL (s), ARGV[4] counter key prefix (same hash tag as KEYS).
-- Returns {state, bookId, available, ...} (available only for 'released'), or {'NONE'}.
local held = redis.call('HGETALL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if #held == 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
  end
  return {'NONE'}
end
local out = {ARGV[2]}
for i = 1, #held, 2 do
  local book, units = held[i], tonumber(held[i + 1])
  if ARGV[2] == 'released' then
    local key = ARGV[4] .. book
    -- A missing counter is rebuilt exactly by reconcile; do not invent one here.
    if redis.call('EXISTS', key) == 1 then
      table.insert(out, book)
      table.insert(out, tostring(redis.call('INCRBY', key, units)))
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
return out
