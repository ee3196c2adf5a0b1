-- requeue hands a released request back to the feeder: the budget had no
-- permit for it now. It goes to the front of its batch's queue (its batch
-- to the front of the ring), to be released again as soon as the budget has
-- room, with a precision asynq's whole-second retries lack. It is waiting.
--
-- KEYS[1] q:<account>:<member>   KEYS[2] ring:<account>   KEYS[3] accounts
-- KEYS[4] r:<id>   KEYS[5] b:<batch> (or a key never written)
-- KEYS[6] pending:<account>
-- ARGV    payload, account, member, vendor, has batch (1/0), id
-- Returns 'OK', or 'FINAL' when the request had already ended.
local queue, ring, accounts, req, batch, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local payload, account, member, vendor, has_batch, id = unpack(ARGV)

redis.call('ZREM', pending, id)
local final = {done = true, failed = true, cancelled = true}
local old = redis.call('HGET', req, 'state') or 'queued'
if final[old] then
  return 'FINAL'
end
if old ~= 'waiting' then
  redis.call('HSET', req, 'state', 'waiting')
  if has_batch == '1' then
    redis.call('HINCRBY', batch, old, -1)
    redis.call('HINCRBY', batch, 'waiting', 1)
  end
end
redis.call('LPUSH', queue, payload)
if not redis.call('LPOS', ring, member) then
  redis.call('LPUSH', ring, member)
end
redis.call('HSET', accounts, account, vendor)
return 'OK'
