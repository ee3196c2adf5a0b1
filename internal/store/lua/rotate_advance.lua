-- rotate_advance records one step of a key rotation, fenced by the
-- rotation id, the owner and the step the caller saw, so that a step is
-- persisted before the next vendor call and a worker that lost the
-- rotation to another cannot record anything.
--
-- KEYS[1] rotation hash
-- ARGV    rotation id, owner, from step, now, lease end ('' releases the
--         rotation), then field, value pairs ('' deletes the field)
-- Returns {'OK'}, {'NOTFOUND'} or {'STALE'}.
local rot = KEYS[1]
local rid, owner, from, now, lease_end = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local r = redis.call('HMGET', rot, 'rid', 'owner', 'step')
if not r[1] then
  return {'NOTFOUND'}
end
if r[1] ~= rid or r[2] ~= owner or r[3] ~= from then
  return {'STALE'}
end
for i = 6, #ARGV - 1, 2 do
  set_or_del(rot, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', rot, 'updated_at', now)
if lease_end == '' then
  redis.call('HDEL', rot, 'owner', 'lease_until')
else
  redis.call('HSET', rot, 'lease_until', lease_end)
end
return {'OK'}
