-- transition moves a request to a new state and keeps its batch's counts,
-- once: a request in a final state (done, failed, cancelled) never moves
-- again, so a task run twice publishes its outcome once. A final state may
-- come with its event, appended to the outbox in the same step, and with
-- the outcome stored under the request's idempotency key.
--
-- KEYS[1] r:<id>   KEYS[2] b:<batch> (or a key never written)   KEYS[3] outbox
-- KEYS[4] idempotency key (or a key never written)
-- KEYS[5] pending:<account> (the request leaves it: past its budget take)
-- ARGV    state, now, has batch (1/0), event id, subject, event json (or ''),
--         idempotency outcome (or ''), idempotency ttl seconds, id,
--         attempts ('' to leave as is), moved ('1': the request leaves its
--         group for a task of its own, so a re-run of the group's task
--         leaves it alone: its release number moves on)
-- Several requests may move in one call (the ended requests of a group):
-- KEYS and ARGV then hold these five keys and eleven arguments for each.
-- Returns, per request, 'OK', or 'FINAL' when it had already ended.
local final = {done = true, failed = true, cancelled = true}

-- The ended requests of a group mostly share a batch: its counts move once
-- per call (the sum of its requests' moves; nothing here reads them).
local batches, deltas = {}, {}
-- The requests leave their pending zset in one ZREM per zset at the end
-- (nothing here reads it), at most 200 at a time.
local pendings, unpend = {}, {}
local function count(batch, field, delta)
  local d = deltas[batch]
  if not d then
    d = {counts = {}}
    deltas[batch] = d
    batches[#batches + 1] = batch
  end
  d.counts[field] = (d.counts[field] or 0) + delta
end

local function step(k, a)
  local req, batch, outbox, idem, pending = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local state, now, has_batch, ev_id, ev_subject, ev_json, outcome, idem_ttl, id, attempts, moved =
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8],
    ARGV[a + 9], ARGV[a + 10], ARGV[a + 11]
  local p = unpend[pending]
  if not p then
    p = {}
    unpend[pending] = p
    pendings[#pendings + 1] = pending
  end
  p[#p + 1] = id

  local old = redis.call('HGET', req, 'state') or 'queued'
  if final[old] then
    return 'FINAL'
  end
  if moved == '1' then
    redis.call('HINCRBY', req, 'releases', 1)
  end
  if old == state then
    if attempts ~= '' then
      redis.call('HSET', req, 'attempts', attempts)
    end
    return 'OK'
  end
  if attempts ~= '' then -- one HSET for both: the script is one step
    redis.call('HSET', req, 'state', state, 'attempts', attempts)
  else
    redis.call('HSET', req, 'state', state)
  end
  if has_batch == '1' then
    count(batch, old, -1)
    count(batch, state, 1)
    local b = deltas[batch]
    if state == 'running' and not b.started then
      b.started = now
    end
    if final[state] then
      b.last = now
    end
  end
  if ev_json ~= '' then
    redis.call('XADD', outbox, '*', 'id', ev_id, 'subject', ev_subject, 'event', ev_json)
  end
  if outcome ~= '' then
    redis.call('SET', idem, outcome, 'EX', idem_ttl)
  end
  return 'OK'
end

local out = {}
for i = 0, #KEYS / 5 - 1 do
  out[i + 1] = step(5 * i, 11 * i)
end
for _, pending in ipairs(pendings) do
  local ids = unpend[pending]
  for i = 1, #ids, 200 do
    redis.call('ZREM', pending, unpack(ids, i, math.min(i + 199, #ids)))
  end
end
for _, batch in ipairs(batches) do
  local d = deltas[batch]
  for field, delta in pairs(d.counts) do
    redis.call('HINCRBY', batch, field, delta)
  end
  if d.started then
    redis.call('HSETNX', batch, 'started', d.started)
  end
  if d.last then
    redis.call('HSET', batch, 'last', d.last)
  end
end
return out
