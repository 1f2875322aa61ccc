-- Recreate a cart lost by Redis from its PostgreSQL copy, keeping the stored version.
-- Writes only while the key is still absent, so a cart changed meanwhile is never
-- overwritten by an older copy.
-- KEYS[1] the user's cart hash (fields as in cart_set_line.lua).
-- ARGV[1] version, ARGV[2] updatedAt (ms, '0' when never changed), ARGV[3] currency
-- ('' for none), ARGV[4..] pairs of bookId, quantity.
-- Returns {'OK'} when written, {'EXISTS'} when the cart was already there.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'EXISTS'}
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'u', ARGV[2])
if #ARGV >= 5 and ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'c', ARGV[3])
end
for i = 4, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], 'b:' .. ARGV[i], ARGV[i + 1])
end
return {'OK'}
