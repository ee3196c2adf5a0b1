-- rotate_finish ends a key rotation, done or aborted, with its events (the
-- key.revoked of the old key, reason rotated) in the same step, and
-- schedules the next rotation. Fenced by the rotation id, the owner and the
-- step the caller saw. The sealed copy of the new key is dropped.
--
-- KEYS[1] rotation hash   KEYS[2] rotation due zset   KEYS[3] outbox
-- ARGV    id, rotation id, owner, from step, to step, now, next due ('' takes
--         the credential out of the rotation schedule), message, then id,
--         subject, JSON of each event
-- Returns {'OK'}, {'NOTFOUND'} or {'STALE'}.
local rot, rdue, outbox = KEYS[1], KEYS[2], KEYS[3]
local id, rid, owner, from, to, now, next_due, message = unpack(ARGV, 1, 8)

local r = redis.call('HMGET', rot, 'rid', 'owner', 'step')
if not r[1] then
  return {'NOTFOUND'}
end
if r[1] ~= rid or r[2] ~= owner or r[3] ~= from then
  return {'STALE'}
end
redis.call('HSET', rot, 'step', to, 'updated_at', now, 'finished_at', now)
set_or_del(rot, 'last_error', message)
redis.call('HDEL', rot, 'new_key', 'owner', 'lease_until')
if next_due == '' then
  redis.call('ZREM', rdue, id)
else
  redis.call('ZADD', rdue, next_due, id)
end
for i = 9, #ARGV - 2, 3 do
  xadd_event(outbox, ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return {'OK'}
