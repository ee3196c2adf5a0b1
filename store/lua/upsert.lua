-- upsert adds a credential, or updates its vendor, client id and client
-- secret when they changed. It never touches the state, generation or token
-- of an existing credential: a revoked credential stays revoked.
--
-- KEYS[1] cred hash   KEYS[2] creds set   KEYS[3] due zset
-- ARGV    id, vendor, client_id, sealed client secret ('' for none),
--         secret fingerprint ('' for none), now
-- Returns 'created', 'updated' or 'unchanged'.
local cred, creds, due = KEYS[1], KEYS[2], KEYS[3]
local id, vendor, client_id, sealed, fp, now = unpack(ARGV)

if redis.call('EXISTS', cred) == 0 then
  redis.call('HSET', cred,
    'vendor', vendor, 'state', 'active', 'gen', '0',
    'next_refresh', now, 'created_at', now, 'updated_at', now)
  set_or_del(cred, 'client_id', client_id)
  set_or_del(cred, 'client_secret', sealed)
  set_or_del(cred, 'secret_fp', fp)
  redis.call('SADD', creds, id)
  -- Due right away: a new credential has no token yet.
  redis.call('ZADD', due, now, id)
  return 'created'
end

-- Heals a creds set that lost the id; writes nothing when it is there.
redis.call('SADD', creds, id)

local cur = redis.call('HMGET', cred, 'vendor', 'client_id', 'secret_fp')
if (cur[1] or '') == vendor and (cur[2] or '') == client_id and (cur[3] or '') == fp then
  return 'unchanged'
end
redis.call('HSET', cred, 'vendor', vendor, 'updated_at', now)
set_or_del(cred, 'client_id', client_id)
set_or_del(cred, 'client_secret', sealed)
set_or_del(cred, 'secret_fp', fp)
return 'updated'
