-- claim gives one worker the right to refresh one generation of a
-- credential, until a lease ends. The same owner may claim again (the lease
-- is extended); another owner waits until the lease has run out.
--
-- KEYS[1] cred hash   KEYS[2] due zset
-- ARGV    id, gen, owner, now, claim end
-- Returns {'OK', <HGETALL of the claimed credential>}, {'NOTFOUND'},
-- {'STALE'} or {'BUSY', claim_until}.
local cred, due = KEYS[1], KEYS[2]
local id, gen, owner, now, claim_end = unpack(ARGV)

local f = redis.call('HMGET', cred, 'state', 'gen', 'claim_owner', 'claim_until')
local state, cur_gen, cur_owner, cur_until = f[1], f[2], f[3], f[4]
if not state then
  return {'NOTFOUND'}
end
if state == 'revoked' or cur_gen ~= gen then
  return {'STALE'}
end
if cur_owner and cur_owner ~= owner and tonumber(cur_until) > tonumber(now) then
  return {'BUSY', cur_until}
end

-- Remember the state to go back to if the claim is released without a
-- commit; a re-claim (already refreshing) keeps the one remembered first.
if state ~= 'refreshing' then
  redis.call('HSET', cred, 'prev_state', state)
end
redis.call('HSET', cred, 'state', 'refreshing', 'claim_owner', owner, 'claim_until', claim_end)

-- Keep the due entry no earlier than the end of the claim: if this worker
-- dies, the credential comes back then, and not while the claim holds.
local score = redis.call('ZSCORE', due, id)
if not score or tonumber(score) < tonumber(claim_end) then
  redis.call('ZADD', due, claim_end, id)
end

return {'OK', redis.call('HGETALL', cred)}
