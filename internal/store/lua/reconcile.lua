-- reconcile puts back in the due index every credential of one SSCAN page
-- of the creds set that should be scheduled (any state but revoked) and is
-- not: the safety net after a lost or flushed index. Entries already there
-- are left as they are. The ids never leave Redis, and one ZMSCORE tells
-- which of a page are missing.
--
-- KEYS[1] creds set   KEYS[2] due zset
-- ARGV    key prefix, now, SSCAN cursor, page size
-- Returns {next cursor ('0' when done), how many it scheduled}.
--
-- As in claim_due, on Redis Cluster the prefix must carry a hash tag.
local creds, due = KEYS[1], KEYS[2]
local prefix, now, cursor, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local page = redis.call('SSCAN', creds, cursor, 'COUNT', count)
local ids = page[2]
local fixed = 0
if #ids > 0 then
  local scores = redis.call('ZMSCORE', due, unpack(ids))
  for i, id in ipairs(ids) do
    if not scores[i] then
      local cred = prefix .. 'cred:' .. id
      local state = redis.call('HGET', cred, 'state')
      if state and state ~= 'revoked' and redis.call('ZADD', due, 'NX', now, id) == 1 then
        redis.call('HSET', cred, 'next_refresh', now)
        fixed = fixed + 1
      end
    end
  end
end
return {page[1], fixed}
