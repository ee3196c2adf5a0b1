-- Prelude: helpers shared by every script of the store (scripts.go puts this
-- text in front of each one). Every time is unix milliseconds, computed by
-- the caller from its clock and passed in ARGV, never Redis TIME.

-- set_or_del sets a hash field, or deletes it when the value is empty: an
-- absent field costs no memory and reads back as "", 0 or the zero time.
local function set_or_del(key, field, value)
  if value == '' then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, value)
  end
end

-- xadd_event appends one event to the outbox stream in the format of
-- events/outbox_format.go: exactly the fields id, subject and event.
local function xadd_event(outbox, id, subject, event)
  redis.call('XADD', outbox, '*', 'id', id, 'subject', subject, 'event', event)
end

-- fence is the check every commit passes through: nil when owner holds the
-- claim on generation gen of the credential, else the refusal to return
-- ({'NOTFOUND'} or {'STALE'}).
local function fence(cred, gen, owner)
  local f = redis.call('HMGET', cred, 'state', 'gen', 'claim_owner')
  if not f[1] then
    return {'NOTFOUND'}
  end
  if f[3] ~= owner or f[2] ~= gen then
    return {'STALE'}
  end
  return nil
end
