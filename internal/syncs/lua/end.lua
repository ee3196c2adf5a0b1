-- end stops a running sync (failed or cancelled) and appends its
-- sync.failed event to the outbox in the same step, once.
--
-- KEYS[1] s:<id>   KEYS[2] outbox   KEYS[3] running:<vendor>
-- ARGV    state, error class, sealed message, now ms, event id, subject, sealed event, ttl seconds, sync id
-- Returns 'OK' or 'ENDED' (the sync had ended already).
local rec, outbox, running = KEYS[1], KEYS[2], KEYS[3]
local state, class, msg, now, ev_id, ev_subject, ev, ttl, id = unpack(ARGV)
if redis.call('HGET', rec, 'state') ~= 'running' then
  return 'ENDED'
end
redis.call('HSET', rec, 'state', state, 'error_class', class, 'error', msg, 'ended', now, 'updated', now)
redis.call('XADD', outbox, '*', 'id', ev_id, 'subject', ev_subject, 'event', ev)
redis.call('EXPIRE', rec, ttl)
redis.call('ZREM', running, id)
return 'OK'
