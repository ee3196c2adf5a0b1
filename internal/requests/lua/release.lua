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
-- Returns the released requests as "<release number>|<payload>", in the
-- order of the round robin: a request handed back by a worker is released
-- again under a new task id, since its first task may still be finishing.
--
-- The round robin is played on a copy of the ring first (each batch's
-- cancel flag and queue length read once), then each batch gives its share
-- in one LPOP and the ring is written back once: a few calls per batch, not
-- six per request. The ring ends as turning it one member per request
-- (LMOVE) would leave it: the members visited and kept go to its tail, in
-- the order visited; the emptied and cancelled ones leave it.
local ring, accounts, pending, releasing, cancelling = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local account, qprefix, bprefix, n, now, rprefix = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local queued, ttl = KEYS[6], ARGV[7]
-- chunk bounds the arguments of one call (Lua's unpack has a stack limit).
local chunk = 200

local function push(cmd, list)
  for i = 1, #list, chunk do
    redis.call(cmd, ring, unpack(list, i, math.min(i + chunk - 1, #list)))
  end
end

-- The ring as the round robin sees it: front (read, not yet visited), the
-- members not yet read (ring positions read+1 ..), back (visited, kept).
local total = redis.call('LLEN', ring)
local read = 0
local front, f, back = {}, 1, {}
local left, share, order = {}, {}, {} -- per member: queue length left, taken; visits that took
local visited = {}
local taken = 0
while taken < n do
  if f > #front then
    if read < total then
      front = redis.call('LRANGE', ring, read, read + math.max(n, chunk) - 1)
      read = read + #front
    else
      front, back = back, {}
    end
    f = 1
    if #front == 0 then
      break
    end
  end
  local member = front[f]
  f = f + 1
  if not visited[member] then
    visited[member] = true
    local cancelled = false
    if string.sub(member, 1, 1) ~= ':' then
      cancelled = redis.call('HGET', bprefix .. member, 'cancel')
    end
    if cancelled then
      redis.call('SADD', cancelling, qprefix .. member)
      left[member] = 0
    else
      left[member] = redis.call('LLEN', qprefix .. member)
      share[member] = 0
    end
  end
  if left[member] > 0 then
    left[member] = left[member] - 1
    share[member] = share[member] + 1
    order[#order + 1] = member
    taken = taken + 1
    if left[member] > 0 then
      back[#back + 1] = member
    end
  end
end
-- Write the ring back only if the round robin moved it.
if #order > 0 or next(visited) then
  local rest = {}
  for i = f, #front do
    rest[#rest + 1] = front[i]
  end
  redis.call('LTRIM', ring, read, -1)
  -- LPUSH puts each argument at the head in turn: the front goes in reversed.
  local rev = {}
  for i = #rest, 1, -1 do
    rev[#rev + 1] = rest[i]
  end
  push('LPUSH', rev)
  push('RPUSH', back)
end

-- Each batch's share in one LPOP, handed out in the round robin's order.
local popped, next_of = {}, {}
for member, k in pairs(share) do
  if k > 0 then
    popped[member] = redis.call('LPOP', qprefix .. member, k)
    next_of[member] = 1
  end
end
local out, ids = {}, {}
for _, member in ipairs(order) do
  local item = popped[member][next_of[member]]
  next_of[member] = next_of[member] + 1
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
  out[#out + 1] = releases .. '|' .. item
  ids[#ids + 1] = id
end
-- The released requests leave the queued set for the releasing hash and
-- the pending zset in a few calls rather than three each (nothing above
-- reads them), at most chunk at a time.
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
