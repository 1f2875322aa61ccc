-- Read a cart for the write-behind job, and clear its persist mark in the same step: a
-- change made after this read schedules a new job.
-- KEYS[1] the cart hash. Returns its fields as HGETALL does (empty when there is none).
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  redis.call('HDEL', KEYS[1], 'p')
end
return fields
