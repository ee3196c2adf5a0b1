-- enable puts a credential back in service, with new key material when
-- given: state active, failures and last error cleared, any claim dropped,
-- and due now so that a token is fetched at once with the new keys.
--
-- KEYS[1] cred hash   KEYS[2] due zset
-- ARGV    id, client id ('' keeps it), sealed keys ('' keeps them),
--         keys fingerprint, now, vendor the keys are sealed for
-- Returns {'OK'}, {'NOTFOUND'}, or {'STALE'} when the credential's vendor
-- is not the one the keys are sealed for (they would not open).
local cred, due = KEYS[1], KEYS[2]
local id, client_id, sealed, fp, now, vendor = unpack(ARGV)

if redis.call('EXISTS', cred) == 0 then
  return {'NOTFOUND'}
end
if sealed ~= '' and redis.call('HGET', cred, 'vendor') ~= vendor then
  return {'STALE'}
end
if client_id ~= '' then
  redis.call('HSET', cred, 'client_id', client_id)
end
if sealed ~= '' then
  redis.call('HSET', cred, 'client_secret', sealed, 'secret_fp', fp)
  -- New keys start afresh: a refresh token of the old grant is not redeemed.
  redis.call('HDEL', cred, 'refresh_token')
end
redis.call('HSET', cred, 'state', 'active', 'failures', '0', 'next_refresh', now, 'updated_at', now)
redis.call('HDEL', cred, 'last_class', 'last_error', 'claim_owner', 'claim_until', 'prev_state')
redis.call('ZADD', due, now, id)
return {'OK'}
