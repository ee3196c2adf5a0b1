-- release.lua: end a lease only if owner still holds it.
--
-- KEYS[1] lease   ARGV[1] owner
--
-- Returns 1 released, 0 not owner's (left alone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
