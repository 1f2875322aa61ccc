-- Make the stock keys agree with a PostgreSQL snapshot, exactly, while orders are being
-- placed, paid and ended. The caller holds FOR SHARE locks on the books in scope, so no
-- sale or restock of them commits meanwhile (a sale converts its hold while it holds
-- those rows FOR UPDATE, and commits before letting go).
-- KEYS[1] the holds index. ARGV[1] key prefix (with hash tag), ARGV[2] ended-marker TTL,
-- ARGV[3] now (ms), ARGV[4] orphan cutoff (ms): a hold PostgreSQL does not own is only
-- released if it was made before this; ARGV[5] the snapshot, JSON:
--   books:   {bookId: onHand}            the books in scope (their counters are rebuilt)
--   orders:  {orderId: [status, token]}  the orders of holds listed before the snapshot
--                                        (status MISSING: no such order)
--   pending: {orderId: [token, {bookId: units}]}  orders awaiting payment in scope
-- ARGV[6] "1" for a dry run: the same report, and nothing written.
-- Holds not listed in `orders` (made after the snapshot, or outside the scope) are left
-- alone; their units still count as held. Ending a hold returns its units to counters
-- outside the scope (as a release would); recreating a lost one takes them (as the
-- reservation did). Returns JSON {counters: {bookId: [before|null, after]},
-- holds: n, repaired: [[orderId, token, action], ...]}.
local prefix, ttl, now, cutoff = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local snap = cjson.decode(ARGV[5])
local dry = ARGV[6] == '1'
local sold = {PAID = 1, FULFILLING = 1, SHIPPED = 1, DELIVERED = 1}
-- A refunded order never sold anything: a hold it left behind goes back.
local ended = {EXPIRED = 1, CANCELLED = 1, FAILED = 1, REFUND_PENDING = 1, REFUNDED = 1}
local repaired = {}
-- What stays held per book (step 2), starting with the holds a dry run would recreate.
local held, count = {}, 0

local function outside(book, delta)
  if dry then
    return
  end
  if snap.books[book] == nil then
    local key = prefix .. 'avail:' .. book
    if redis.call('EXISTS', key) == 1 then
      redis.call('INCRBY', key, delta)
    end
  end
end

-- 1. Every order awaiting payment holds its units under its own token.
for order, entry in pairs(snap.pending) do
  local token, lines = entry[1], entry[2]
  local member = order .. ':' .. token
  local hold = prefix .. 'hold:' .. member
  if redis.call('EXISTS', hold) == 0 then
    local marker = redis.call('GET', prefix .. 'ended:' .. member)
    -- 'released': it ended after the snapshot was taken; the next run sees that status.
    if marker ~= 'released' then
      -- A dry run counts what step 2 would list: the hold it would recreate.
      if dry and not redis.call('ZSCORE', KEYS[1], member) then
        count = count + 1
      end
      for book, units in pairs(lines) do
        if dry then
          held[book] = (held[book] or 0) + units
        else
          redis.call('HSET', hold, book, units)
        end
        -- 'converted' without a sale in PostgreSQL: the seller's transaction never
        -- committed, and its conversion left the counters as the hold had them.
        if marker ~= 'converted' then
          outside(book, -units)
        end
      end
      if not dry then
        redis.call('ZADD', KEYS[1], now, member)
        redis.call('DEL', prefix .. 'ended:' .. member)
      end
      table.insert(repaired, {order, token, marker and 'resurrected' or 'recreated'})
    end
  end
end

-- 2. End the holds PostgreSQL says are over; sum what stays held.
local listed = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #listed, 2 do
  local member, created = listed[i], tonumber(listed[i + 1])
  local sep = string.find(member, ':', 1, true)
  local order, token = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local hold = prefix .. 'hold:' .. member
  local lines = redis.call('HGETALL', hold)
  count = count + 1
  local info, action = snap.orders[order], nil
  if info ~= nil then
    if info[2] == token then
      if sold[info[1]] then
        action = 'converted'
      elseif ended[info[1]] then
        action = 'released'
      end
    elseif created < cutoff then
      action = 'released' -- an orphan: no order owns this token
    end
  end
  if action ~= nil then
    if action == 'released' then
      for j = 1, #lines, 2 do
        outside(lines[j], tonumber(lines[j + 1]))
      end
    end
    if not dry then
      redis.call('DEL', hold)
      redis.call('ZREM', KEYS[1], member)
      redis.call('SET', prefix .. 'ended:' .. member, action, 'EX', ttl)
    end
    table.insert(repaired, {order, token, action})
  elseif #lines == 0 then
    if not dry then
      redis.call('ZREM', KEYS[1], member) -- an index entry whose hold is gone
    end
  else
    for j = 1, #lines, 2 do
      held[lines[j]] = (held[lines[j]] or 0) + tonumber(lines[j + 1])
    end
  end
end

-- 3. available = on hand - held, for every book in scope.
local counters = {}
for book, on_hand in pairs(snap.books) do
  local key = prefix .. 'avail:' .. book
  local before = redis.call('GET', key)
  local after = on_hand - (held[book] or 0)
  if not dry then
    redis.call('SET', key, after)
  end
  counters[book] = {before and tonumber(before) or cjson.null, after}
end
return cjson.encode({counters = counters, holds = count, repaired = repaired})
