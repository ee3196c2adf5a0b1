-- rotate_claim_due takes up to limit credentials whose key rotation is due
-- and pushes each one's due time to the end of a lease, so that another
-- scheduler replica does not take it too, while a rotation job that gets
-- lost brings it back when the lease runs out.
--
-- KEYS[1] rotation due zset
-- ARGV    now, limit, lease end
-- Returns the ids.
local rdue = KEYS[1]
local now, limit, lease_end = ARGV[1], ARGV[2], ARGV[3]

local ids = redis.call('ZRANGEBYSCORE', rdue, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  redis.call('ZADD', rdue, lease_end, id)
end
return ids
