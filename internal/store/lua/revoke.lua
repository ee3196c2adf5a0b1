-- revoke marks a credential revoked by an operator, provided its generation
-- is still the one the caller's event speaks of, and writes the event in the
-- same step. A claim in flight is dropped: the worker's commit will find it
-- stale and discard what it got. Nothing is deleted.
--
-- KEYS[1] cred hash   KEYS[2] due zset   KEYS[3] outbox stream
-- ARGV    id, gen, class, message, now, then id, subject, JSON of the event
-- Returns {'OK'}, {'NOTFOUND'}, {'STALE'} or {'REVOKED'} (already revoked).
local cred, due, outbox = KEYS[1], KEYS[2], KEYS[3]
local id, gen, class, message, now = unpack(ARGV, 1, 5)

local f = redis.call('HMGET', cred, 'state', 'gen')
if not f[1] then
  return {'NOTFOUND'}
end
if f[1] == 'revoked' then
  return {'REVOKED'}
end
if f[2] ~= gen then
  return {'STALE'}
end
redis.call('HSET', cred, 'state', 'revoked', 'updated_at', now)
set_or_del(cred, 'last_class', class)
set_or_del(cred, 'last_error', message)
redis.call('HDEL', cred, 'claim_owner', 'claim_until', 'prev_state', 'next_refresh')
redis.call('ZREM', due, id)
xadd_event(outbox, ARGV[6], ARGV[7], ARGV[8])
return {'OK'}
