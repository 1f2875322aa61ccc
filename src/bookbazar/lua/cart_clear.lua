-- Remove every line of a cart. The hash itself stays: its version must never go back.
-- KEYS[1] the user's cart hash (fields as in cart_set_line.lua). ARGV[1] now (ms).
-- Returns:
--   {'OK', version, updatedAt, linesRemoved}  cleared; version bumped once
--   {'EMPTY', version, updatedAt}             nothing to clear; nothing changed
--   {'NO_CART'}                               no cart in Redis (caller rehydrates, retries)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'NO_CART'}
end
local removed = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'b:' then
    redis.call('HDEL', KEYS[1], field)
    removed = removed + 1
  end
end
if removed == 0 then
  return {'EMPTY', redis.call('HGET', KEYS[1], 'v'), redis.call('HGET', KEYS[1], 'u')}
end
redis.call('HDEL', KEYS[1], 'c')
redis.call('HSET', KEYS[1], 'u', ARGV[1])
local version = redis.call('HINCRBY', KEYS[1], 'v', 1)
return {'OK', version, ARGV[1], removed}
