-- Set one cart line's quantity (add the line or replace its quantity).
-- KEYS[1] the user's cart hash: 'v' version, 'u' updatedAt (ms), 'c' currency (present
-- exactly when the cart has lines), 'b:<bookId>' quantity per line.
-- ARGV[1] bookId, ARGV[2] quantity, ARGV[3] the book's currency, ARGV[4] now (ms),
-- ARGV[5] the largest quantity a line may hold.
-- Returns:
--   {'OK', quantity, version, updatedAt}   the line holds `quantity`; version bumped once
--   {'NO_CART'}                            no cart in Redis (caller rehydrates, retries)
--   {'CURRENCY', cartCurrency}             the cart's lines are priced in another currency
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NO_CART'}
end
local quantity = tonumber(ARGV[2])
if quantity == nil or quantity ~= math.floor(quantity) or quantity < 1
    or quantity > tonumber(ARGV[5]) then
  return redis.error_reply('quantity must be an integer from 1 to ' .. ARGV[5])
end
local currency = redis.call('HGET', KEYS[1], 'c')
if currency and currency ~= ARGV[3] then
  return {'CURRENCY', currency}
end
redis.call('HSET', KEYS[1], 'b:' .. ARGV[1], quantity, 'c', ARGV[3], 'u', ARGV[4])
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
return {'OK', quantity, version, ARGV[4]}
