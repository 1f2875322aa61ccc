-- After an order took a cart's items: if the cart is still the one the order was made
-- from (same version), clear it; otherwise the buyer changed it meanwhile, so remove only
-- the ordered books' lines. Calling it twice changes nothing the second time.
-- KEYS[1] the user's cart hash (fields as in cart_set_line.lua).
-- ARGV[1] the cart version the order was built from, ARGV[2] now (ms), ARGV[3..] bookIds.
-- Returns:
--   {'CLEARED', version, updatedAt}                 every line removed; version bumped once
--   {'REMOVED', version, updatedAt, bookId, ...}    those lines removed; version bumped once
--                                                   per line (the last one is `version`)
--   {'NOOP', version, updatedAt}                    nothing to remove
--   {'NO_CART'}                                     no cart in Redis (caller rehydrates)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NO_CART'}
end
local function lines()
  local out = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(field, 1, 2) == 'b:' then
      table.insert(out, field)
    end
  end
  return out
end
local version = tonumber(redis.call('HGET', KEYS[1], 'v'))
if version == tonumber(ARGV[1]) then
  local fields = lines()
  if #fields == 0 then
    return {'NOOP', version, redis.call('HGET', KEYS[1], 'u')}
  end
  for _, field in ipairs(fields) do
    redis.call('HDEL', KEYS[1], field)
  end
  redis.call('HDEL', KEYS[1], 'c')
  redis.call('HSET', KEYS[1], 'u', ARGV[2])
  return {'CLEARED', redis.call('HINCRBY', KEYS[1], 'v', 1), ARGV[2]}
end
local out = {'REMOVED', 0, ARGV[2]}
for i = 3, #ARGV do
  if redis.call('HDEL', KEYS[1], 'b:' .. ARGV[i]) == 1 then
    version = redis.call('HINCRBY', KEYS[1], 'v', 1)
    table.insert(out, ARGV[i])
  end
end
if #out == 3 then
  return {'NOOP', version, redis.call('HGET', KEYS[1], 'u')}
end
if #lines() == 0 then
  redis.call('HDEL', KEYS[1], 'c')
end
redis.call('HSET', KEYS[1], 'u', ARGV[2])
out[2] = version
return out
