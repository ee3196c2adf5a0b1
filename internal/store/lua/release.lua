-- release gives a claim back without a result (the worker stops before it
-- called the vendor): the state from before the claim comes back and the
-- credential is due again at retry_at. A claim that is not owner's (any
-- more), or of a credential that is gone, is left alone.
--
-- KEYS[1] cred hash   KEYS[2] due zset
-- ARGV    id, owner, retry at
-- Returns {'OK'}.
local cred, due = KEYS[1], KEYS[2]
local id, owner, retry_at = unpack(ARGV)

local f = redis.call('HMGET', cred, 'state', 'claim_owner', 'prev_state')
local state, cur_owner, prev = f[1], f[2], f[3]
if not state or cur_owner ~= owner then
  return {'OK'}
end

if not prev then
  prev = (state == 'refreshing') and 'active' or state
end
redis.call('HSET', cred, 'state', prev)
redis.call('HDEL', cred, 'claim_owner', 'claim_until', 'prev_state')
if prev ~= 'revoked' then
  redis.call('ZADD', due, retry_at, id)
  redis.call('HSET', cred, 'next_refresh', retry_at)
end
return {'OK'}
