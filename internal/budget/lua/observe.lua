-- observe.lua: correct one account's budget from what the vendor said.
--
-- KEYS as take.lua (log, used, meta, learned).
-- ARGV[1] now ms (0: Redis TIME)   ARGV[2] kind "sliding" | "fixed"
-- ARGV[3] configured limit         ARGV[4] window (ms)
-- ARGV[5] header limit (-1 none)   ARGV[6] header remaining (-1 none)
-- ARGV[7] header reset ms (-1 none; fixed window)
-- ARGV[8] pause ms (-1: not a 429) ARGV[9] learned-limit TTL ms
-- ARGV[10] id for a phantom entry (usage the vendor saw and we did not)
-- ARGV[11] permits the observing process leased and has not handed out
--          (counted in used, not yet seen by the vendor)
--
-- A lower limit applies at once; a higher one is approached by a tenth at a
-- time. A remaining count below ours adds the difference as used now.
-- Returns {now, paused, limit, used}.

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local kind = ARGV[2]
local per = tonumber(ARGV[4])
local hlimit = tonumber(ARGV[5])
local hrem = tonumber(ARGV[6])
local hreset = tonumber(ARGV[7])
local pause = tonumber(ARGV[8])
local ttl = tonumber(ARGV[9])

local learned = redis.call('GET', KEYS[4])
local limit = tonumber(learned or ARGV[3])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')

if hlimit >= 0 then
  if hlimit < limit then
    limit = hlimit
    redis.call('SET', KEYS[4], limit, 'PX', ttl)
  elseif hlimit > limit then
    limit = math.min(hlimit, limit + math.max(1, math.floor(limit / 10)))
    redis.call('SET', KEYS[4], limit, 'PX', ttl)
  elseif learned then
    redis.call('PEXPIRE', KEYS[4], ttl)
  end
end

if kind == 'sliding' then
  if hrem >= 0 then
    local deficit = (limit - used + tonumber(ARGV[11])) - hrem
    if deficit > 0 then
      redis.call('ZADD', KEYS[1], now, ARGV[10] .. ':' .. deficit)
      used = used + deficit
      redis.call('SET', KEYS[2], used, 'PX', per + 60000)
      redis.call('PEXPIRE', KEYS[1], per + 60000)
    end
  end
else
  local reset = tonumber(redis.call('HGET', KEYS[3], 'reset') or '0')
  local current = true
  if hreset >= 0 then
    if reset == 0 or hreset > reset + per / 2 then
      -- The vendor is in a window we have not reached: take its count.
      reset = hreset
      used = 0
      redis.call('HSET', KEYS[3], 'reset', reset)
    elseif hreset >= reset - per / 2 then
      -- The same window: adopt the vendor's exact end.
      reset = hreset
      redis.call('HSET', KEYS[3], 'reset', reset)
    else
      current = false -- a late answer from an earlier window
    end
  end
  local unused = tonumber(ARGV[11])
  if current and hrem >= 0 and limit - hrem + unused > used then
    used = limit - hrem + unused
  end
  if reset > now then
    redis.call('SET', KEYS[2], used, 'PX', reset - now + per)
  end
end

local paused = tonumber(redis.call('HGET', KEYS[3], 'paused') or '0')
if pause >= 0 and now + pause > paused then
  paused = now + pause
  redis.call('HSET', KEYS[3], 'paused', paused)
end
redis.call('PEXPIRE', KEYS[3], math.max(per, paused - now) + 3600000)
return {now, paused, limit, used}
