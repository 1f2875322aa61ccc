-- Release a short lock only if we still own it (the token we set).
-- KEYS[1] the lock key. ARGV[1] our token. Returns 1 if released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
