-- End one hold, once: release it (units go back to the counters) or convert it (the
-- units were sold: on-hand stock falls in PostgreSQL, so availability is unchanged).
-- KEYS[1] the hold, KEYS[2] the holds index, KEYS[3] the hold's ended marker,
-- KEYS[4..] the available-units counters of the hold's books (a release needs them; the
-- caller reads the hold's books first).
-- ARGV[1] index member, ARGV[2] 'released' | 'converted', ARGV[3] marker TTL (s),
-- ARGV[4..] the book ids of KEYS[4..], aligned.
-- Returns:
--   {'DONE', bookId, available, ...}   this call ended it (levels only when released)
--   {'ENDED', state}                   it had ended already, as `state`; nothing changed
--   {'NONE'}                           no such hold and no marker: marked ended now, so a
--                                      reservation under this token can never be made
--   {'UNDECLARED'}                     a release whose hold has a book whose counter was
--                                      not passed (the hold appeared after the caller
--                                      read it); nothing changed: read again and retry
local held = redis.call('HGETALL', KEYS[1])
if #held == 0 then
  local ended = redis.call('GET', KEYS[3])
  if ended then
    return {'ENDED', ended}
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
  return {'NONE'}
end
local out = {'DONE'}
if ARGV[2] == 'released' then
  local counter = {}
  for i = 4, #ARGV do
    counter[ARGV[i]] = KEYS[i]
  end
  for i = 1, #held, 2 do
    if counter[held[i]] == nil then
      return {'UNDECLARED'}
    end
  end
  for i = 1, #held, 2 do
    local key = counter[held[i]]
    -- A missing counter is rebuilt exactly by reconcile; do not invent one here.
    if redis.call('EXISTS', key) == 1 then
      table.insert(out, held[i])
      table.insert(out, redis.call('INCRBY', key, tonumber(held[i + 1])))
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
return out
