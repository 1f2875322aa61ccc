-- Reserve every line of one order, all or nothing.
-- KEYS[1] reservation hash (bookId -> units), KEYS[2] reservation index (zset orderId -> ms),
-- KEYS[3] tombstone of a finished reservation, KEYS[4..] available-units counter per line.
-- ARGV[1] orderId, ARGV[2] now (ms), ARGV[3] '1' to ignore a tombstone (late payment),
-- ARGV[4..] per line: bookId, units (pairs aligned with KEYS[4..]).
-- Lines naming the same book are summed. Returns:
--   {'OK', bookId, available, ...}      reserved; available after the change per book
--   {'EXISTS'}                          this order already holds its reservation
--   {'DONE', state}                     this order's reservation already ended
--   {'MISSING', bookId, ...}            counters not initialised (caller reconciles, retries)
--   {'SHORT', bookId, requested, available, ...}  nothing reserved
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'EXISTS'}
end
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return {'DONE', redis.call('GET', KEYS[3])}
end
local need, keys, ids = {}, {}, {}
for i = 4, #KEYS do
  local key = KEYS[i]
  local book = ARGV[4 + (i - 4) * 2]
  local units = tonumber(ARGV[5 + (i - 4) * 2])
  if units == nil or units <= 0 then
    return redis.error_reply('units must be a positive integer')
  end
  if need[key] == nil then
    need[key] = 0
    table.insert(keys, key)
    ids[key] = book
  end
  need[key] = need[key] + units
end
local missing = {'MISSING'}
for _, key in ipairs(keys) do
  if redis.call('EXISTS', key) == 0 then
    table.insert(missing, ids[key])
  end
end
if #missing > 1 then
  return missing
end
local short = {'SHORT'}
for _, key in ipairs(keys) do
  local available = tonumber(redis.call('GET', key))
  if available < need[key] then
    table.insert(short, ids[key])
    table.insert(short, tostring(need[key]))
    table.insert(short, tostring(available))
  end
end
if #short > 1 then
  return short
end
local out = {'OK'}
for _, key in ipairs(keys) do
  local left = redis.call('DECRBY', key, need[key])
  redis.call('HSET', KEYS[1], ids[key], need[key])
  table.insert(out, ids[key])
  table.insert(out, tostring(left))
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('DEL', KEYS[3])
return out
