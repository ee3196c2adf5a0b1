-- claim gives one worker the right to refresh one generation of each of
-- several credentials, until a lease ends: one script and one round trip for
-- a whole batch, each credential fenced on its own. The same owner may claim
-- again (the lease is extended); another owner waits until the lease has run
-- out. A credential named twice in one call is claimed once: the later
-- mention is stale.
--
-- KEYS    the cred hash of each credential, in order
-- ARGV    owner, now, claim end, how many of the fields below to return,
--         then id, gen of each credential
-- Returns one reply per credential, in order: {'NOTFOUND'}, {'STALE'},
-- {'BUSY', claim_until} or, when claimed, 'OK' followed by the first
-- fields of the list below (claimFields in redis.go reads them by
-- position; an absent field is nil), with prev_state holding the state
-- before the claim. The first 11 are what a refresh needs; claim_owner and
-- claim_until come back nil.
--
-- The due entry is left alone: the scheduler's lease put it at about the
-- end of this claim already, and if the worker dies, claim_due finds the
-- claim still holding when the entry comes due and looks again when the
-- claim ends (a ZADD here would cost every renewal for the rare lost one).
local FIELDS = {'state', 'gen', 'claim_owner', 'claim_until', 'prev_state',
  'vendor', 'client_id', 'client_secret', 'refresh_token', 'expires_at',
  'failures', 'access_token', 'token_type', 'issued_at', 'next_refresh',
  'last_class', 'last_error', 'created_at', 'updated_at'}
local owner, now, claim_end = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local nfields = math.max(5, math.min(tonumber(ARGV[4]), #FIELDS))

local out, seen = {}, {}
for i = 1, #KEYS do
  local cred, id, gen = KEYS[i], ARGV[2 * i + 3], ARGV[2 * i + 4]
  local f = redis.call('HMGET', cred, unpack(FIELDS, 1, nfields))
  local state = f[1]
  if not state then
    out[i] = {'NOTFOUND'}
  elseif state == 'revoked' or f[2] ~= gen or seen[id] then
    out[i] = {'STALE'}
  elseif f[3] and f[3] ~= owner and tonumber(f[4]) > now then
    out[i] = {'BUSY', f[4]}
  else
    seen[id] = true
    -- Remember the state to go back to if the claim is released without a
    -- commit; a re-claim (already refreshing) keeps the one remembered
    -- first.
    if state ~= 'refreshing' then
      redis.call('HSET', cred, 'prev_state', state, 'state', 'refreshing',
        'claim_owner', owner, 'claim_until', claim_end)
      f[5] = state
    else
      redis.call('HSET', cred, 'claim_owner', owner, 'claim_until', claim_end)
    end
    f[1], f[3], f[4] = 'OK', false, false
    out[i] = f
  end
end
return out
