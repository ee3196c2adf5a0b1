-- claim_due takes up to limit credentials whose refresh is due and pushes
-- each one's due time to the end of a lease, so that another scheduler
-- replica does not take it too, while a job that gets lost brings it back
-- when the lease runs out. O(log N + due).
--
-- KEYS[1] due zset
-- ARGV    key prefix, now, limit, lease end
-- Returns a flat list: id1, gen1, id2, gen2, ...
--
-- The credential hashes are named from the prefix, not passed in KEYS: on
-- Redis Cluster the prefix must carry a hash tag so that they share a slot.
local due = KEYS[1]
local prefix, now, limit, lease_end = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local out, leased = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)) do
  local f = redis.call('HMGET', prefix .. 'cred:' .. id, 'state', 'gen', 'claim_until')
  local state, gen, claim_until = f[1], f[2], f[3]
  if not state or state == 'revoked' then
    -- A stray index entry (no such credential, or one never to be
    -- scheduled again): drop the entry, never the credential.
    redis.call('ZREM', due, id)
  elseif claim_until and tonumber(claim_until) > tonumber(now) then
    -- A worker is refreshing it right now: look again when its claim ends.
    redis.call('ZADD', due, claim_until, id)
  else
    leased[#leased + 1] = lease_end
    leased[#leased + 1] = id
    if #leased >= 1000 then
      -- unpack has a limit: a few hundred leases per ZADD.
      redis.call('ZADD', due, unpack(leased))
      leased = {}
    end
    out[#out + 1] = id
    out[#out + 1] = gen
  end
end
-- The leases in as few ZADDs as unpack allows.
if #leased > 0 then
  redis.call('ZADD', due, unpack(leased))
end
return out
