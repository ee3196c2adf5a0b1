-- cancel asks a running sync of (vendor, credential) to stop at its next
-- page boundary.
--
-- KEYS[1] s:<id>
-- ARGV    vendor, credential
-- Returns 'OK', 'NOT_FOUND' (no such sync of this credential) or the
-- state of a sync that is not running.
local rec = KEYS[1]
local vendor, credential = unpack(ARGV)
local v = redis.call('HMGET', rec, 'vendor', 'credential', 'state')
if v[1] ~= vendor or v[2] ~= credential then
  return 'NOT_FOUND'
end
if v[3] ~= 'running' then
  return v[3]
end
redis.call('HSET', rec, 'cancel', '1')
return 'OK'
