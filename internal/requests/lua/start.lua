-- start reads a request as a worker picks it up and, unless it has ended or
-- its batch is cancelled, marks it running (keeping the batch's counts).
--
-- KEYS[1] r:<id>   KEYS[2] b:<batch> (or a key never written)
-- ARGV    has batch (1/0), now
-- Returns {state before, refreshed generation or '', attempts or '',
-- cancelled 1/0}.
local req, batch = KEYS[1], KEYS[2]
local has_batch, now = ARGV[1], ARGV[2]

local f = redis.call('HMGET', req, 'state', 'refreshed', 'attempts')
local state = f[1] or 'queued'
local cancelled = 0
if has_batch == '1' and redis.call('HEXISTS', batch, 'cancel') == 1 then
  cancelled = 1
end
local final = {done = true, failed = true, cancelled = true}
if not final[state] and cancelled == 0 and state ~= 'running' then
  redis.call('HSET', req, 'state', 'running')
  if has_batch == '1' then
    redis.call('HINCRBY', batch, state, -1)
    redis.call('HINCRBY', batch, 'running', 1)
    redis.call('HSETNX', batch, 'started', now)
  end
end
return {state, f[2] or '', f[3] or '', cancelled}
