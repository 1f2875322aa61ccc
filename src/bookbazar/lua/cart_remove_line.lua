-- Remove one cart line.
-- KEYS[1] the user's cart hash (fields as in cart_set_line.lua).
-- ARGV[1] bookId, ARGV[2] now (ms).
-- Returns:
--   {'OK', version, updatedAt, linesLeft}  removed; version bumped once
--   {'NOT_FOUND'}                          the cart has no line for that book
--   {'NO_CART'}                            no cart in Redis (caller rehydrates, retries)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NO_CART'}
end
if redis.call('HDEL', KEYS[1], 'b:' .. ARGV[1]) == 0 then
  return {'NOT_FOUND'}
end
local left = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'b:' then
    left = left + 1
  end
end
if left == 0 then
  -- An empty cart has no currency: the next line may be priced in any.
  redis.call('HDEL', KEYS[1], 'c')
end
redis.call('HSET', KEYS[1], 'u', ARGV[2])
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
return {'OK', version, ARGV[2], left}
