-- reconcile puts back in the due index every credential of a batch that
-- should be scheduled (any state but revoked) and is not: the safety net
-- after a lost or flushed index. Entries already there are left as they are.
--
-- KEYS[1] due zset
-- ARGV    key prefix, now, then the ids of the batch
-- Returns how many credentials it scheduled.
--
-- As in claim_due, on Redis Cluster the prefix must carry a hash tag.
local due = KEYS[1]
local prefix, now = ARGV[1], ARGV[2]

local fixed = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local cred = prefix .. 'cred:' .. id
  local state = redis.call('HGET', cred, 'state')
  if state and state ~= 'revoked' and redis.call('ZADD', due, 'NX', now, id) == 1 then
    redis.call('HSET', cred, 'next_refresh', now)
    fixed = fixed + 1
  end
end
return fixed
