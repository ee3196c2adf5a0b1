-- commit_failure records a failed refresh, fenced by the claim and the
-- generation, and writes its events to the outbox in the same step. A
-- revoked credential leaves the due index for good (nothing is deleted);
-- any other is scheduled again at retry_at.
--
-- KEYS[1] cred hash   KEYS[2] due zset   KEYS[3] outbox stream
-- ARGV    id, owner, gen, state, class, message, retry at, now,
--         then id, subject, JSON of each event, in order
-- Returns {'OK'}, {'NOTFOUND'} or {'STALE'}; nothing is written unless 'OK'.
local cred, due, outbox = KEYS[1], KEYS[2], KEYS[3]
local id, owner, gen, state, class, message, retry_at, now = unpack(ARGV, 1, 8)

local refused = fence(cred, gen, owner)
if refused then
  return refused
end

redis.call('HINCRBY', cred, 'failures', 1)
redis.call('HSET', cred, 'state', state, 'updated_at', now)
set_or_del(cred, 'last_class', class)
set_or_del(cred, 'last_error', message)
redis.call('HDEL', cred, 'claim_owner', 'claim_until', 'prev_state')
if state == 'revoked' then
  redis.call('ZREM', due, id)
  redis.call('HDEL', cred, 'next_refresh')
else
  redis.call('ZADD', due, retry_at, id)
  redis.call('HSET', cred, 'next_refresh', retry_at)
end
for i = 9, #ARGV, 3 do
  xadd_event(outbox, ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return {'OK'}
