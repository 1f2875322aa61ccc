-- Change one user's cart, atomically, and announce it, in one round trip: the change,
-- its version bump, one `cart:update` event per changed line appended to the user's
-- recent-events stream and published on the Socket.IO channel, and optional extras (an
-- order's idempotent answer stored, stock levels published).
-- KEYS[1] the cart hash: 'v' version (bumped once per changed line), 'u' updatedAt (ms),
--         'c' currency (present exactly when the cart has lines), 'b:<bookId>' quantity.
-- KEYS[2] the set of orders this cart was emptied for (op 'ordered').
-- KEYS[3] the user's recent-events stream.
-- KEYS[4] a key to store a value under (extras.store), or any key of the user's slot.
-- ARGV[1] op, ARGV[2] now (ms), ARGV[3] extras JSON:
--   {emit: {channel, host, ns, room, user, id, maxlen, keep},   -- the Socket.IO message
--    store: {value, ttl}, publish: [message, ...]}               -- optional
-- ARGV[4..] per op:
--   set      bookId, quantity, currency, max quantity
--   remove   bookId
--   clear    -
--   ordered  version the order was built from, orderId, marker TTL (s), bookId...
-- Returns {status, version, updatedAt, info, events published, field, value, ...} where
-- the fields are the whole cart after the call. status:
--   OK        changed (info: set -> the line's quantity; clear -> lines removed;
--             ordered -> 'cleared' or the removed bookIds joined by ',')
--   NOOP      nothing changed (remove -> no such line: info 'not_found')
--   CURRENCY  set refused: the cart holds lines in another currency (info: it)
--   NO_CART   no cart in Redis (the caller rehydrates it and calls again; nothing done)
local cart, op, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', cart) == 0 then
  return {'NO_CART'}
end
local extras = cjson.decode(ARGV[3])

local function line_fields()
  local out = {}
  for _, field in ipairs(redis.call('HKEYS', cart)) do
    if string.sub(field, 1, 2) == 'b:' then
      table.insert(out, field)
    end
  end
  return out
end

local function clear_lines()
  local fields = line_fields()
  for _, field in ipairs(fields) do
    redis.call('HDEL', cart, field)
  end
  return #fields
end

-- Each change: {kind, bookId or nil, quantity or nil}, one version each.
local status, info, changes = 'NOOP', '', {}
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
    status, info = 'OK', tostring(quantity)
    changes = {{'cart:item_updated', ARGV[4], quantity}}
  end
elseif op == 'remove' then
  if redis.call('HDEL', cart, 'b:' .. ARGV[4]) == 1 then
    status, changes = 'OK', {{'cart:item_deleted', ARGV[4], nil}}
  else
    info = 'not_found'
  end
elseif op == 'clear' then
  local removed = clear_lines()
  if removed > 0 then
    status, info, changes = 'OK', tostring(removed), {{'cart:cleared', nil, nil}}
  end
elseif op == 'ordered' then
  -- Once per order: a replayed answer must not empty a cart the buyer refilled.
  if redis.call('SADD', KEYS[2], ARGV[5]) == 1 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
    if tonumber(redis.call('HGET', cart, 'v')) == tonumber(ARGV[4]) then
      -- Still the cart the order was made from: empty it (one version).
      if clear_lines() > 0 then
        status, info, changes = 'OK', 'cleared', {{'cart:cleared', nil, nil}}
      end
    else
      -- Changed since: remove only the ordered books' lines (one version each).
      local removed = {}
      for i = 7, #ARGV do
        if redis.call('HDEL', cart, 'b:' .. ARGV[i]) == 1 then
          table.insert(removed, ARGV[i])
          table.insert(changes, {'cart:item_deleted', ARGV[i], nil})
        end
      end
      if #removed > 0 then
        status, info = 'OK', table.concat(removed, ',')
      end
    end
  end
else
  return redis.error_reply('unknown cart op ' .. op)
end

local messages = {}
if #changes > 0 then
  if #line_fields() == 0 then
    redis.call('HDEL', cart, 'c') -- an empty cart takes a line in any currency
  end
  redis.call('HSET', cart, 'u', now)
  local emit = extras.emit
  for n, change in ipairs(changes) do
    local version = redis.call('HINCRBY', cart, 'v', 1)
    if emit then
      local payload = {event = change[1], userId = emit.user, version = version,
                       updatedAt = now, id = emit.id .. '-' .. n}
      if change[2] then payload.bookId = change[2] end
      if change[3] then payload.quantity = change[3] end
      local encoded = cjson.encode(payload)
      redis.call('XADD', KEYS[3], 'MAXLEN', emit.maxlen, '*',
                 'id', payload.id, 'event', 'cart:update', 'payload', encoded)
      table.insert(messages, cjson.encode({method = 'emit', event = 'cart:update',
        data = {payload}, binary = false, namespace = emit.ns, room = emit.room,
        skip_sid = cjson.null, callback = cjson.null, host_id = emit.host}))
    end
  end
  if emit then
    redis.call('XTRIM', KEYS[3], 'MINID', tostring(now - emit.keep))
    redis.call('PEXPIRE', KEYS[3], emit.keep)
  end
end
if extras.store then
  redis.call('SET', KEYS[4], extras.store.value, 'EX', extras.store.ttl)
end
local channel = extras.emit and extras.emit.channel or extras.channel
for _, message in ipairs(messages) do
  redis.call('PUBLISH', channel, message)
end
for _, message in ipairs(extras.publish or {}) do
  redis.call('PUBLISH', channel, message)
end
local out = {status, redis.call('HGET', cart, 'v'), redis.call('HGET', cart, 'u') or '0', info,
             #messages}
for _, value in ipairs(redis.call('HGETALL', cart)) do
  table.insert(out, value)
end
return out
