-- upsert adds a credential, or updates its vendor, client id and client
-- secret when they changed. It never touches the state, generation or token
-- of an existing credential: a revoked credential stays revoked.
--
-- KEYS[1] cred hash   KEYS[2] creds set   KEYS[3] due zset
-- ARGV    id, vendor, client_id, sealed client secret ('' for none),
--         secret fingerprint ('' for none), now, and when the vendor
--         changes on a credential with tokens: the old vendor, sealed
--         access token and sealed refresh token the caller read, and the
--         access and refresh tokens sealed again for the new vendor
--         (old access, new access, old refresh, new refresh)
-- Returns 'created', 'updated', 'unchanged', or 'REBIND' when the vendor
-- changes and the tokens (bound to the old vendor) were not given sealed
-- again, or changed since the caller read them: read, seal and call again.
local cred, creds, due = KEYS[1], KEYS[2], KEYS[3]
local id, vendor, client_id, sealed, fp, now = unpack(ARGV, 1, 6)
local old_vendor, old_access, new_access, old_refresh, new_refresh = unpack(ARGV, 7, 11)

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

local cur = redis.call('HMGET', cred, 'vendor', 'client_id', 'secret_fp', 'access_token', 'refresh_token')
if (cur[1] or '') == vendor and (cur[2] or '') == client_id and (cur[3] or '') == fp then
  return 'unchanged'
end
if (cur[1] or '') ~= vendor and (cur[4] or cur[5]) then
  -- The tokens are sealed bound to the old vendor name.
  if old_vendor ~= cur[1] or old_access ~= (cur[4] or '') or old_refresh ~= (cur[5] or '') then
    return 'REBIND'
  end
  set_or_del(cred, 'access_token', new_access)
  set_or_del(cred, 'refresh_token', new_refresh)
end
redis.call('HSET', cred, 'vendor', vendor, 'updated_at', now)
set_or_del(cred, 'client_id', client_id)
set_or_del(cred, 'client_secret', sealed)
set_or_del(cred, 'secret_fp', fp)
return 'updated'
