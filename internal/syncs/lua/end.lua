-- end stops a running sync (failed or cancelled) and appends its
-- sync.failed event to the outbox in the same step, once.
--
-- KEYS[1] s:<id>   KEYS[2] outbox
-- ARGV    state, error class, sealed message, now ms, event id, subject, sealed event, ttl seconds
-- Returns 'OK' or 'ENDED' (the sync had ended already).
local rec, outbox = KEYS[1], KEYS[2]
local state, class, msg, now, ev_id, ev_subject, ev, ttl = unpack(ARGV)
if redis.call('HGET', rec, 'state') ~= 'running' then
  return 'ENDED'
end
redis.call('HSET', rec, 'state', state, 'error_class', class, 'error', msg, 'ended', now, 'updated', now)
redis.call('XADD', outbox, '*', 'id', ev_id, 'subject', ev_subject, 'event', ev)
redis.call('EXPIRE', rec, ttl)
return 'OK'
