-- acquire.lua: take a lease if it is free, or extend it if owner holds it.
--
-- KEYS[1] lease   string: the holder's owner token, expiring with the lease
-- ARGV[1] owner   ARGV[2] ttl (ms)
--
-- Returns 2 taken (it was free), 1 extended (owner held it), 0 held by
-- another owner (left alone).
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
