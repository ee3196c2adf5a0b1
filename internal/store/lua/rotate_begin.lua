-- rotate_begin starts a key rotation of a credential, or hands the one in
-- progress to owner when nobody else holds it (a crash left it, or its
-- lease ran out), so that a rotation always resumes where it stopped and a
-- credential never has two rotations at once.
--
-- The rotation records the credential's vendor: its new key is sealed
-- bound to it.
--
-- A request (the asynq task asking for the rotation) is recorded with the
-- rotation it begins; once that rotation has finished, the same request
-- begins no other ({'DONE'}): a task run again after its worker died, its
-- rotation resumed and finished by another, asks for nothing new. A
-- resume-only request hands over the rotation in progress and never
-- begins one ({'DONE'} when none is in progress).
--
-- KEYS[1] cred hash   KEYS[2] rotation hash
-- ARGV    new rotation id, owner, now, lease end, request ('' for none),
--         resume only ('1' or '')
-- Returns {'OK', flat rotation hash}, {'NOTFOUND'}, {'REVOKED'},
-- {'BUSY', lease end} or {'DONE'}.
local cred, rot = KEYS[1], KEYS[2]
local rid, owner, now, lease_end, request, resume_only = unpack(ARGV)
request = request or ''

local state = redis.call('HGET', cred, 'state')
if not state then
  return {'NOTFOUND'}
end
local r = redis.call('HMGET', rot, 'step', 'owner', 'lease_until')
local step, holder, until_ = r[1], r[2], r[3]
local in_progress = step and step ~= 'done' and step ~= 'aborted'
if state == 'revoked' and not in_progress then
  return {'REVOKED'}
end
if in_progress then
  if holder and holder ~= owner and until_ and tonumber(until_) > tonumber(now) then
    return {'BUSY', until_}
  end
  redis.call('HSET', rot, 'owner', owner, 'lease_until', lease_end, 'updated_at', now)
  -- A rotation begun before the vendor was recorded: its new key, if any,
  -- opens with the legacy binding (see store/binding.go).
  redis.call('HSETNX', rot, 'vendor', redis.call('HGET', cred, 'vendor') or '')
else
  if resume_only == '1' or (step and request ~= '' and redis.call('HGET', rot, 'request') == request) then
    return {'DONE'}
  end
  redis.call('DEL', rot)
  redis.call('HSET', rot, 'rid', rid, 'step', 'planned', 'attempt', '0',
    'started_at', now, 'updated_at', now, 'owner', owner, 'lease_until', lease_end,
    'vendor', redis.call('HGET', cred, 'vendor') or '', 'request', request)
end
return {'OK', redis.call('HGETALL', rot)}
