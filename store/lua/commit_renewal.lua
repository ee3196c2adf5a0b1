-- commit_renewal records a new token, fenced by the claim and the
-- generation, and writes its event to the outbox in the same step.
--
-- KEYS[1] cred hash   KEYS[2] due zset   KEYS[3] outbox stream
-- ARGV    id, owner, gen, next gen, sealed access token, token type,
--         issued at, expires at, sealed refresh token ('' keeps the old one),
--         next refresh, now, event id, event subject, event JSON
-- Returns {'OK'}, {'NOTFOUND'} or {'STALE'}; nothing is written unless 'OK'.
local cred, due, outbox = KEYS[1], KEYS[2], KEYS[3]
local id, owner, gen, next_gen, access, token_type, issued, expires, refresh,
      next_refresh, now, ev_id, ev_subject, ev_json = unpack(ARGV)

local refused = fence(cred, gen, owner)
if refused then
  return refused
end

redis.call('HSET', cred,
  'gen', next_gen, 'state', 'active', 'access_token', access,
  'next_refresh', next_refresh, 'updated_at', now)
set_or_del(cred, 'token_type', token_type)
set_or_del(cred, 'issued_at', issued)
set_or_del(cred, 'expires_at', expires)
if refresh ~= '' then
  redis.call('HSET', cred, 'refresh_token', refresh)
end
-- A success ends any run of failures and the claim.
redis.call('HDEL', cred, 'failures', 'last_class', 'last_error',
  'claim_owner', 'claim_until', 'prev_state')
redis.call('ZADD', due, next_refresh, id)
xadd_event(outbox, ev_id, ev_subject, ev_json)
return {'OK'}
