-- start records a new sync, running, unless its id is taken.
--
-- KEYS[1] s:<id>   KEYS[2] all (zset of syncs by start)
-- KEYS[3] running:<vendor> (zset of the vendor's running syncs by last move)
-- ARGV    id, vendor, credential, resource, mode, batch, sealed spec, now ms, ttl seconds
-- Returns 'OK' or 'DUPLICATE' (a sync id is never reused while its record lives).
local rec, all, running = KEYS[1], KEYS[2], KEYS[3]
local id, vendor, credential, resource, mode, batch, spec, now, ttl = unpack(ARGV)
if redis.call('EXISTS', rec) == 1 then
  return 'DUPLICATE'
end
redis.call('HSET', rec, 'vendor', vendor, 'credential', credential, 'resource', resource, 'mode', mode,
  'batch', batch, 'spec', spec, 'state', 'running', 'page', 0, 'resources', 0, 'started', now, 'updated', now)
redis.call('EXPIRE', rec, ttl)
redis.call('ZADD', all, now, id)
redis.call('ZADD', running, now, id)
return 'OK'
