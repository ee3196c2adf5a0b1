-- start reads requests as a worker picks them up and, unless one has ended,
-- its batch is cancelled or it has moved on (below), marks it running
-- (keeping the batch's counts). A task carries one request or a group of
-- them (one round trip for the group).
--
-- KEYS    per request: r:<id>, b:<batch> (or a key never written)
-- ARGV    now, the group's owner ('' for a task of one request: its first
--         request's id and release), then per request: has batch (1/0),
--         release ('' or the feeder's release number the task carries it
--         under)
-- Returns per request {state before, refreshed generation or '',
-- attempts or '', cancelled 1/0}. The state is 'moved' when the request
-- was released again, or handed to a task of its own, since the release
-- the task names, or when another group runs it (a feeder that died
-- between enqueueing a group and forgetting it: its successor enqueues
-- each of the group's requests again, as a group of one): that task's
-- run, not this one, sends it. A group's task run again after its worker
-- died is the same owner and sends what was in flight again.
local now, owner = ARGV[1], ARGV[2]
local final = {done = true, failed = true, cancelled = true}
local out = {}
-- A group's requests mostly share a batch: its counts move once per call
-- (the sum of its requests' moves; nothing here reads them).
local batches, deltas, cancels = {}, {}, {}
local function count(batch, field, delta)
  local d = deltas[batch]
  if not d then
    d = {}
    deltas[batch] = d
    batches[#batches + 1] = batch
  end
  d[field] = (d[field] or 0) + delta
end
for i = 1, #KEYS / 2 do
  local req, batch = KEYS[2 * i - 1], KEYS[2 * i]
  local has_batch, release = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local f = redis.call('HMGET', req, 'state', 'refreshed', 'attempts', 'releases', 'owner')
  local state = f[1] or 'queued'
  local cancelled = 0
  if release ~= '' and not final[state] and f[4] ~= release then
    state = 'moved'
  elseif owner ~= '' and state == 'running' and f[5] and f[5] ~= owner then
    state = 'moved'
  else
    if has_batch == '1' then
      if cancels[batch] == nil then -- asked once per batch: nothing here cancels
        cancels[batch] = redis.call('HEXISTS', batch, 'cancel')
      end
      cancelled = cancels[batch]
    end
    if not final[state] and cancelled == 0 and state ~= 'running' then
      if owner ~= '' then
        redis.call('HSET', req, 'state', 'running', 'owner', owner)
      else
        redis.call('HSET', req, 'state', 'running')
      end
      if has_batch == '1' then
        count(batch, state, -1)
        count(batch, 'running', 1)
      end
    end
  end
  out[i] = {state, f[2] or '', f[3] or '', cancelled}
end
for _, batch in ipairs(batches) do
  for field, delta in pairs(deltas[batch]) do
    redis.call('HINCRBY', batch, field, delta)
  end
  redis.call('HSETNX', batch, 'started', now)
end
return out
