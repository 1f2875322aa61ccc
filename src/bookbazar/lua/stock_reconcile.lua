-- Rebuild available-units counters exactly from a PostgreSQL snapshot.
-- The caller holds FOR SHARE locks on the books' rows, so on-hand stock and the set of
-- sold orders cannot change underneath; reservations made meanwhile are live in Redis.
-- KEYS[1] reservation index. ARGV[1] key prefix (with hash tag), ARGV[2] tombstone TTL,
-- ARGV[3] now (ms), ARGV[4] JSON snapshot:
--   {books: {bookId: onHand}, status: {orderId: status},
--    pending: {orderId: {bookId: units}}}   -- PAYMENT_PENDING orders' lines
-- Returns JSON {bookId: [before or null, after]} for every book in the snapshot.
local prefix, ttl, now = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local snap = cjson.decode(ARGV[4])
local sold = {PAID = 1, FULFILLING = 1, SHIPPED = 1, DELIVERED = 1, REFUND_PENDING = 1, REFUNDED = 1}
local ended = {EXPIRED = 1, CANCELLED = 1, FAILED = 1}

-- 1. Recreate lost reservations of orders still waiting for payment (unless they ended).
for order, lines in pairs(snap.pending) do
  local resv = prefix .. 'resv:' .. order
  if redis.call('EXISTS', resv) == 0 and redis.call('EXISTS', prefix .. 'done:' .. order) == 0 then
    for book, units in pairs(lines) do
      redis.call('HSET', resv, book, units)
    end
    redis.call('ZADD', KEYS[1], now, order)
  end
end

-- 2. Finish reservations left behind by a crash, then sum what is still held.
local held = {}
for _, order in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local resv = prefix .. 'resv:' .. order
  local status = snap.status[order]
  if status ~= nil and (sold[status] or ended[status]) then
    redis.call('DEL', resv)
    redis.call('ZREM', KEYS[1], order)
    redis.call('SET', prefix .. 'done:' .. order, sold[status] and 'converted' or 'released', 'EX', ttl)
  else
    local lines = redis.call('HGETALL', resv)
    if #lines == 0 then
      redis.call('ZREM', KEYS[1], order)
    end
    for i = 1, #lines, 2 do
      held[lines[i]] = (held[lines[i]] or 0) + tonumber(lines[i + 1])
    end
  end
end

-- 3. available = on hand - held.
local report = {}
for book, on_hand in pairs(snap.books) do
  local key = prefix .. 'avail:' .. book
  local before = redis.call('GET', key)
  local after = on_hand - (held[book] or 0)
  redis.call('SET', key, after)
  report[book] = {before and tonumber(before) or cjson.null, after}
end
return cjson.encode(report)
