-- submit queues one request in its batch's list for its account, for the
-- feeder to release fairly (round robin across the account's batches).
-- A queued request has no key of its own: it is its entry in the list and
-- its id in the queued set; release.lua writes its hash r:<id>.
--
-- KEYS[1] request hash r:<id>   KEYS[2] queue list q:<account>:<member>
-- KEYS[3] ring list ring:<account>   KEYS[4] accounts hash (account -> vendor)
-- KEYS[5] batch hash b:<batch> (a key never written when there is no batch)
-- KEYS[6] the credential's hash in the store (store.CredentialKey), or a
--         key never written
-- KEYS[7] queued set (the ids of the requests queued and never released)
-- ARGV    payload (the sealed entry, entry.go), account, member, batch
--         (unused), now, ttl seconds, has batch (1/0), vendor, credential
--         (unused), check credential (1/0)
-- Returns 'OK', 'DUPLICATE' (the id was submitted before, by this or any
-- other credential: an id is never reused) or 'CANCELLED'; when asked to
-- check the credential, 'NOCRED' (none), 'REVOKED', or 'VENDOR' (it is
-- another vendor's).
local req, queue, ring, accounts, batch, cred, queued = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local payload, account, member, batch_id, now, ttl, has_batch, vendor, credential, check = unpack(ARGV)

if check == '1' then
  local c = redis.call('HMGET', cred, 'vendor', 'state')
  if not c[2] or c[2] == '' then
    return 'NOCRED'
  elseif c[2] == 'revoked' then
    return 'REVOKED'
  elseif c[1] ~= vendor then
    return 'VENDOR'
  end
end

local id = string.sub(payload, 3, 2 + string.byte(payload, 2)) -- entry.go

if redis.call('EXISTS', req) == 1 or redis.call('SISMEMBER', queued, id) == 1 then
  return 'DUPLICATE'
end
if has_batch == '1' and redis.call('HGET', batch, 'cancel') then
  return 'CANCELLED'
end
-- No hash yet (scripts read a missing one as queued): the entry holds the
-- id, vendor, credential and batch, and the set keeps the id from reuse.
redis.call('SADD', queued, id)
redis.call('RPUSH', queue, payload)
if not redis.call('LPOS', ring, member) then
  redis.call('RPUSH', ring, member)
end
redis.call('HSET', accounts, account, vendor)
if has_batch == '1' then
  redis.call('HINCRBY', batch, 'total', 1)
  redis.call('HINCRBY', batch, 'queued', 1)
  redis.call('HSETNX', batch, 'created', now)
  redis.call('EXPIRE', batch, ttl)
end
return 'OK'
