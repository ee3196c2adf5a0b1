-- release takes up to n requests of one account, one from each of its
-- batches in turn (round robin), for the feeder to enqueue as tasks. Each is
-- remembered in the releasing hash until the feeder has enqueued it (so a
-- feeder that dies in between loses nothing) and in the pending zset until
-- a worker has taken the budget for it. Its id leaves the queued set for
-- its own hash r:<id> (its release count), kept ttl seconds from its first
-- release. A cancelled batch leaves the ring and goes to the cancelling
-- set, whose requests the feeder ends.
--
-- KEYS[1] ring:<account>   KEYS[2] accounts hash   KEYS[3] pending zset
-- KEYS[4] releasing hash   KEYS[5] cancelling set   KEYS[6] queued set
-- ARGV    account, queue key prefix (q:<account>:), batch key prefix (b:),
--         n, now, request key prefix (r:), ttl seconds of a request's hash
-- Returns the released requests as "<release number>|<payload>": a request
-- handed back by a worker is released again under a new task id, since
-- its first task may still be finishing.
local ring, accounts, pending, releasing, cancelling = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local account, qprefix, bprefix, n, now, rprefix = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local queued, ttl = KEYS[6], ARGV[7]

local out, ids = {}, {}
while #out < n do
  local member = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
  if not member then
    break
  end
  local queue = qprefix .. member
  local cancelled = false
  if string.sub(member, 1, 1) ~= ':' then
    cancelled = redis.call('HGET', bprefix .. member, 'cancel')
  end
  if cancelled then
    redis.call('LREM', ring, 0, member)
    redis.call('SADD', cancelling, queue)
  else
    local item = redis.call('LPOP', queue)
    if not item then
      redis.call('LREM', ring, 0, member)
    else
      local id
      if string.byte(item, 1) == 123 then -- '{': queued before the binary form
        id = cjson.decode(item)['id']
      else -- 0x01, the id's length, the id (entry.go)
        id = string.sub(item, 3, 2 + string.byte(item, 2))
      end
      local releases = redis.call('HINCRBY', rprefix .. id, 'releases', 1)
      if releases == 1 then
        redis.call('EXPIRE', rprefix .. id, ttl)
      end
      local entry = releases .. '|' .. item
      out[#out + 1] = entry
      ids[#ids + 1] = id
      if redis.call('LLEN', queue) == 0 then
        redis.call('LREM', ring, 0, member)
      end
    end
  end
end
-- The released requests leave the queued set for the releasing hash and
-- the pending zset in a few calls rather than three each (nothing above
-- reads them), at most chunk at a time (Lua's unpack has a stack limit).
local chunk = 200
for i = 1, #ids, chunk do
  local last = math.min(i + chunk - 1, #ids)
  local fields, members = {}, {}
  for j = i, last do
    fields[#fields + 1] = ids[j]
    fields[#fields + 1] = out[j]
    members[#members + 1] = now
    members[#members + 1] = ids[j]
  end
  redis.call('SREM', queued, unpack(ids, i, last))
  redis.call('HSET', releasing, unpack(fields))
  redis.call('ZADD', pending, unpack(members))
end
if redis.call('LLEN', ring) == 0 then
  redis.call('HDEL', accounts, account)
end
return out
