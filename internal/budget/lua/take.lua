-- take.lua: lease up to `want` permits of one account's budget, after
-- handing back the unused part of an earlier lease. want 0 only reports.
--
-- KEYS[1] log     sorted set (sliding window): member "<lease id>:<count>",
--                 score = the latest time (ms) the lease's permits may be used
-- KEYS[2] used    string: permits counted in the current window (the sum of
--                 the log's counts; fixed window: the window's count)
-- KEYS[3] meta    hash: paused (ms), reset (fixed window end, ms)
-- KEYS[4] learned string: the limit learned from the vendor (absent: the
--                 configured one), with a TTL
-- ARGV[1] now ms (0: Redis TIME)      ARGV[2] kind "sliding" | "fixed"
-- ARGV[3] configured limit            ARGV[4] window (ms)
-- ARGV[5] want                        ARGV[6] reserve fraction (bulk; 0 priority)
-- ARGV[7] shift ms: the lease's score is now+shift (sliding)
-- ARGV[8] lease id                    ARGV[9] member to hand back ("" none)
-- ARGV[10] unused count handed back   ARGV[11] reset of the handed-back lease (fixed)
-- ARGV[12] guard ms: no fixed-window grant this close to its reset
-- ARGV[13] ms to move the handed-back lease's time earlier: its permits
--          were all handed out by then (sliding)
--
-- Returns {granted, now, retry (ms, 0 if granted), limit, used, paused, reset}.

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local kind = ARGV[2]
local per = tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local frac = tonumber(ARGV[6])
local shift = tonumber(ARGV[7])

local limit = tonumber(redis.call('GET', KEYS[4]) or ARGV[3])
local paused = tonumber(redis.call('HGET', KEYS[3], 'paused') or '0')
local reset = 0

local function count_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

local reserve = 0
if frac > 0 and limit > 1 then
  reserve = math.max(1, math.floor(limit * frac))
end

local used, granted, retry = 0, 0, 0

if kind == 'sliding' then
  -- Forget the leases whose permits are all outside the window.
  local cutoff = '(' .. (now - per)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  local freed = 0
  for _, m in ipairs(gone) do freed = freed + count_of(m) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff) end
  used = tonumber(redis.call('GET', KEYS[2]) or '0') - freed
  -- End an earlier lease: give back its unused permits (never handed
  -- out, so safe) and record the rest at the time the last was handed out.
  if ARGV[9] ~= '' then
    local sc = redis.call('ZSCORE', KEYS[1], ARGV[9])
    if sc then
      local back = tonumber(ARGV[10])
      local c = count_of(ARGV[9])
      local newsc = tonumber(sc) - tonumber(ARGV[13])
      if back > 0 then
        redis.call('ZREM', KEYS[1], ARGV[9])
        if c > back then
          redis.call('ZADD', KEYS[1], newsc, string.match(ARGV[9], '^(.*):%d+$') .. ':' .. (c - back))
        end
        used = used - math.min(back, c)
      elseif newsc < tonumber(sc) then
        redis.call('ZADD', KEYS[1], 'XX', newsc, ARGV[9])
      end
    end
  end
  if used < 0 then used = 0 end
  if now >= paused then
    local avail = limit - reserve - used
    if want > 0 and avail > 0 then
      granted = math.min(want, avail)
      redis.call('ZADD', KEYS[1], now + shift, ARGV[8] .. ':' .. granted)
      used = used + granted
    elseif want > 0 then
      -- Earliest time enough leases leave the window for one permit.
      local need = used - (limit - reserve) + 1
      local oldest = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
      retry = now + per
      local acc = 0
      for i = 1, #oldest, 2 do
        acc = acc + count_of(oldest[i])
        if acc >= need then
          retry = tonumber(oldest[i + 1]) + per + 1
          break
        end
      end
      if retry <= now then retry = now + 1 end
    end
  else
    if want > 0 then retry = paused end
  end
  redis.call('SET', KEYS[2], used, 'PX', per + shift + 60000)
  redis.call('PEXPIRE', KEYS[1], per + shift + 60000)
else
  -- Fixed window ending at reset; the count starts afresh after it.
  reset = tonumber(redis.call('HGET', KEYS[3], 'reset') or '0')
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if reset == 0 or now >= reset then
    if reset == 0 then
      reset = (math.floor(now / per) + 1) * per
    else
      reset = reset + per * (math.floor((now - reset) / per) + 1)
    end
    used = 0
    redis.call('HSET', KEYS[3], 'reset', reset)
  end
  if ARGV[9] ~= '' and tonumber(ARGV[11]) == reset then
    used = math.max(0, used - tonumber(ARGV[10]))
  end
  if now < paused then
    if want > 0 then retry = paused end
  elseif want > 0 then
    local avail = limit - reserve - used
    if now >= reset - tonumber(ARGV[12]) then
      retry = reset
    elseif avail > 0 then
      granted = math.min(want, avail)
      used = used + granted
    else
      retry = reset
    end
  end
  redis.call('SET', KEYS[2], used, 'PX', math.max(1, reset - now) + per)
end
redis.call('PEXPIRE', KEYS[3], math.max(per, paused - now) + 3600000)
return {granted, now, retry, limit, used, paused, reset}
