-- commit_renewal records the new tokens of one or more refreshes, each
-- fenced by its claim and generation and written together with its event
-- in the outbox: one script and one round trip for a whole batch, and for
-- each credential all or nothing.
--
-- KEYS[1] due zset   KEYS[2] outbox stream   then the cred hash of each
--         renewal, in order
-- ARGV    now, then 15 per renewal: id, owner, gen, next gen, vendor the
--         tokens are sealed for, sealed access token, token type, issued
--         at, expires at, sealed refresh token ('' keeps the old one), next
--         refresh, event id, event subject, event JSON, the renewal's
--         traceparent ('' when it was not sampled: the field goes)
-- Returns one status per renewal, in order: 'OK', 'NOTFOUND' or 'STALE'
-- (also when the credential's vendor is no longer the one the tokens are
-- sealed for: they would not open); nothing is written for a renewal
-- unless 'OK'.
local due, outbox, now = KEYS[1], KEYS[2], ARGV[1]

-- put adds field=value to the HSET list, or the field to the HDEL list
-- when the value is empty (absent fields read as "", 0 or the zero time).
local function put(set, del, field, value)
  if value == '' then
    del[#del + 1] = field
  else
    local n = #set
    set[n + 1] = field
    set[n + 2] = value
  end
end

local out = {}
for i = 3, #KEYS do
  local cred, a = KEYS[i], 2 + (i - 3) * 15
  local id, owner, gen, next_gen, vendor, access, token_type, issued, expires,
        refresh, next_refresh, ev_id, ev_subject, ev_json, trace = unpack(ARGV, a, a + 14)
  local refused = fence(cred, gen, owner)
  if not refused and redis.call('HGET', cred, 'vendor') ~= vendor then
    refused = {'STALE'}
  end
  if refused then
    out[i - 2] = refused[1]
  else
    local set = {'gen', next_gen, 'state', 'active', 'access_token', access,
      'next_refresh', next_refresh, 'updated_at', now}
    -- A success ends any run of failures and the claim.
    local del = {'failures', 'last_class', 'last_error', 'claim_owner',
      'claim_until', 'prev_state'}
    put(set, del, 'token_type', token_type)
    put(set, del, 'issued_at', issued)
    put(set, del, 'expires_at', expires)
    put(set, del, 'trace', trace)
    if refresh ~= '' then
      put(set, del, 'refresh_token', refresh)
    end
    redis.call('HSET', cred, unpack(set))
    redis.call('HDEL', cred, unpack(del))
    redis.call('ZADD', due, next_refresh, id)
    xadd_event(outbox, ev_id, ev_subject, ev_json)
    out[i - 2] = 'OK'
  end
end
return out
