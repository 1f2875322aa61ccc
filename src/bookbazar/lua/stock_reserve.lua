-- Reserve every line of one hold, all or nothing.
-- KEYS[1] the hold (hash bookId -> units), KEYS[2] the holds index (zset member -> ms),
-- KEYS[3] the hold's ended marker, KEYS[4..] the available-units counter per line.
-- ARGV[1] index member "<orderId>:<token>", ARGV[2] now (ms),
-- ARGV[3..] per line: bookId, units (pairs aligned with KEYS[4..]).
-- Lines naming the same book are summed. Returns:
--   {'OK', bookId, available, ...}      reserved; available after the change per book
--   {'EXISTS'}                          this hold is already in place
--   {'ENDED', state}                    this hold already ended ('released'|'converted')
--   {'MISSING', bookId, ...}            counters not initialised (caller rebuilds, retries)
--   {'SHORT', bookId, requested, available, ...}  nothing reserved
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'EXISTS'}
end
local ended = redis.call('GET', KEYS[3])
if ended then
  return {'ENDED', ended}
end
local need, order, ids = {}, {}, {}
for i = 4, #KEYS do
  local key = KEYS[i]
  local units = tonumber(ARGV[4 + (i - 4) * 2])
  if units == nil or units <= 0 or units ~= math.floor(units) then
    return redis.error_reply('units must be a positive integer')
  end
  if need[key] == nil then
    need[key] = 0
    table.insert(order, key)
    ids[key] = ARGV[3 + (i - 4) * 2]
  end
  need[key] = need[key] + units
end
local missing = {'MISSING'}
for _, key in ipairs(order) do
  if redis.call('EXISTS', key) == 0 then
    table.insert(missing, ids[key])
  end
end
if #missing > 1 then
  return missing
end
local short = {'SHORT'}
for _, key in ipairs(order) do
  local available = tonumber(redis.call('GET', key))
  if available < need[key] then
    table.insert(short, ids[key])
    table.insert(short, need[key])
    table.insert(short, available)
  end
end
if #short > 1 then
  return short
end
local out = {'OK'}
for _, key in ipairs(order) do
  local left = redis.call('DECRBY', key, need[key])
  redis.call('HSET', KEYS[1], ids[key], need[key])
  table.insert(out, ids[key])
  table.insert(out, left)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return out
