-- unqueue gives queued requests that are about to end without being
-- released (those of a cancelled batch) their record: each id still in the
-- queued set leaves it for a request hash of the state queued, kept ttl
-- seconds, which transition.lua then ends. An id already out of the set (a
-- request handed back by a worker, or unqueued by an earlier pass that
-- stopped before ending it) keeps the hash it has.
--
-- KEYS[1] queued set   KEYS[2..] r:<id> of each id
-- ARGV    ttl seconds, then the ids
-- Returns how many ids left the set.
local queued, ttl = KEYS[1], ARGV[1]
local n = 0
for i = 2, #KEYS do
  if redis.call('SREM', queued, ARGV[i]) == 1 then
    redis.call('HSETNX', KEYS[i], 'state', 'queued')
    redis.call('EXPIRE', KEYS[i], ttl)
    n = n + 1
  end
end
return n
