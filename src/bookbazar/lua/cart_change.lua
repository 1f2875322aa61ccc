-- Change one user's cart, atomically: the change, its version bump, and the write-behind
-- mark, in one round trip.
-- KEYS[1] the cart hash: 'v' version (bumped once per changed line), 'u' updatedAt (ms),
--         'c' currency (present exactly when the cart has lines), 'b:<bookId>' quantity,
--         'p' when a persist job was last scheduled (ms; removed when the job reads it).
-- KEYS[2] the set of orders this cart was emptied for (op 'ordered' only).
-- ARGV[1] op, ARGV[2] now (ms), ARGV[3] a persist job older than this many ms is presumed
-- lost, ARGV[4..] per op:
--   set      bookId, quantity, currency, max quantity
--   remove   bookId
--   clear    -
--   ordered  version the order was built from, orderId, marker TTL (s), bookId...
-- Returns {status, version, updatedAt, schedule, info, field, value, ...} where the
-- fields are the whole cart after the call and `schedule` is 1 when the caller must
-- enqueue the persist job. status:
--   OK          changed (info: set -> the line's quantity; clear -> lines removed;
--               ordered -> 'cleared' or the removed bookIds joined by ',')
--   NOOP        nothing to change (remove -> no such line: info 'not_found')
--   CURRENCY    set refused: the cart holds lines in another currency (info: it)
--   NO_CART     no cart in Redis (the caller rehydrates it and calls again)
local cart, op, now = KEYS[1], ARGV[1], ARGV[2]
if redis.call('EXISTS', cart) == 0 then
  return {'NO_CART'}
end

local function line_fields()
  local out = {}
  for _, field in ipairs(redis.call('HKEYS', cart)) do
    if string.sub(field, 1, 2) == 'b:' then
      table.insert(out, field)
    end
  end
  return out
end

local status, info, bumps = 'NOOP', '', 0
if op == 'set' then
  local quantity = tonumber(ARGV[5])
  if quantity == nil or quantity ~= math.floor(quantity) or quantity < 1
      or quantity > tonumber(ARGV[7]) then
    return redis.error_reply('quantity must be an integer from 1 to ' .. ARGV[7])
  end
  local currency = redis.call('HGET', cart, 'c')
  if currency and currency ~= ARGV[6] then
    status, info = 'CURRENCY', currency
  else
    redis.call('HSET', cart, 'b:' .. ARGV[4], quantity, 'c', ARGV[6])
    status, info, bumps = 'OK', tostring(quantity), 1
  end
elseif op == 'remove' then
  if redis.call('HDEL', cart, 'b:' .. ARGV[4]) == 1 then
    status, bumps = 'OK', 1
  else
    info = 'not_found'
  end
elseif op == 'clear' then
  local fields = line_fields()
  for _, field in ipairs(fields) do
    redis.call('HDEL', cart, field)
  end
  if #fields > 0 then
    status, info, bumps = 'OK', tostring(#fields), 1
  end
elseif op == 'ordered' then
  -- Once per order: a replayed answer must not empty a cart the buyer refilled.
  if redis.call('SADD', KEYS[2], ARGV[5]) == 1 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
    if tonumber(redis.call('HGET', cart, 'v')) == tonumber(ARGV[4]) then
      -- Still the cart the order was made from: empty it (one version).
      local fields = line_fields()
      for _, field in ipairs(fields) do
        redis.call('HDEL', cart, field)
      end
      if #fields > 0 then
        status, info, bumps = 'OK', 'cleared', 1
      end
    else
      -- Changed since: remove only the ordered books' lines (one version each).
      local removed = {}
      for i = 7, #ARGV do
        if redis.call('HDEL', cart, 'b:' .. ARGV[i]) == 1 then
          table.insert(removed, ARGV[i])
        end
      end
      if #removed > 0 then
        status, info, bumps = 'OK', table.concat(removed, ','), #removed
      end
    end
  end
else
  return redis.error_reply('unknown cart op ' .. op)
end

local schedule = 0
if bumps > 0 then
  if #line_fields() == 0 then
    redis.call('HDEL', cart, 'c') -- an empty cart takes a line in any currency
  end
  redis.call('HSET', cart, 'u', now)
  redis.call('HINCRBY', cart, 'v', bumps)
  local scheduled = tonumber(redis.call('HGET', cart, 'p') or '0')
  if tonumber(now) - scheduled > tonumber(ARGV[3]) then
    redis.call('HSET', cart, 'p', now)
    schedule = 1
  end
end
local out = {status, redis.call('HGET', cart, 'v'), redis.call('HGET', cart, 'u') or '0', schedule, info}
for _, value in ipairs(redis.call('HGETALL', cart)) do
  table.insert(out, value)
end
return out
