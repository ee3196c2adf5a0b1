-- rotate_switch puts a rotation's verified new key in the credential and
-- writes the key.rotated event (and, when the key is itself the token, the
-- token.renewed event of the new generation) in the same step. Fenced by
-- the rotation (id, owner, step verified) and the credential's generation;
-- a claim in flight is dropped, so a refresh made with the old key is
-- discarded as stale.
--
-- KEYS[1] cred hash   KEYS[2] rotation hash   KEYS[3] due zset
-- KEYS[4] outbox stream
-- ARGV    id, rotation id, owner, gen, now, sealed keys, keys fingerprint,
--         with token ('1' or ''), next gen, sealed access token, token
--         type, issued at, expires at, next refresh, vendor the keys and
--         token are sealed for, then id, subject, JSON of each event
-- Returns {'OK'}, {'NOTFOUND'}, {'STALE'} (also when the credential's
-- vendor is not the one the keys are sealed for) or {'REVOKED'}.
local cred, rot, due, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, rid, owner, gen, now, sealed, fp, with_token, next_gen, access,
      token_type, issued, expires, next_refresh, vendor = unpack(ARGV, 1, 15)

local r = redis.call('HMGET', rot, 'rid', 'owner', 'step')
if not r[1] then
  return {'NOTFOUND'}
end
if r[1] ~= rid or r[2] ~= owner or r[3] ~= 'verified' then
  return {'STALE'}
end
local f = redis.call('HMGET', cred, 'state', 'gen', 'vendor')
if not f[1] then
  return {'NOTFOUND'}
end
if f[1] == 'revoked' then
  return {'REVOKED'}
end
if (f[2] or '0') ~= gen or f[3] ~= vendor then
  return {'STALE'}
end
redis.call('HSET', cred, 'client_secret', sealed, 'secret_fp', fp, 'updated_at', now)
if with_token == '1' then
  redis.call('HSET', cred, 'gen', next_gen, 'state', 'active', 'access_token', access,
    'next_refresh', next_refresh)
  set_or_del(cred, 'token_type', token_type)
  set_or_del(cred, 'issued_at', issued)
  set_or_del(cred, 'expires_at', expires)
  redis.call('HDEL', cred, 'failures', 'last_class', 'last_error',
    'claim_owner', 'claim_until', 'prev_state')
  redis.call('ZADD', due, next_refresh, id)
end
redis.call('HSET', rot, 'step', 'switched', 'updated_at', now, 'switched_at', now)
for i = 16, #ARGV - 2, 3 do
  xadd_event(outbox, ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return {'OK'}
