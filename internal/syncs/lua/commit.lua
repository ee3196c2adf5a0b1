-- commit records one page of a running sync and appends its event to the
-- outbox in the same step: the cursor moves exactly when the page's event
-- is written, once however often the page is fetched. The last page also
-- ends the sync (sync.completed) and moves its search's high-water mark.
--
-- KEYS[1] s:<id>   KEYS[2] outbox   KEYS[3] mark key (of the sync's search)
-- KEYS[4] running:<vendor> (zset of the vendor's running syncs by last move)
-- ARGV    page, sealed cursor, resources on the page, total ('' unknown), now ms,
--         page event id, subject, sealed event,
--         final (1/0), completed event id, subject, sealed event, mark ('' none), ttl seconds, sync id
-- Returns 'OK', 'SEEN' (the page was committed before) or 'ENDED' (the sync
-- is not running).
local rec, outbox, mark_key, running = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local page, cursor, n, total, now, ev_id, ev_subject, ev, final, done_id, done_subject, done_ev, mark, ttl, id = unpack(ARGV)

if redis.call('HGET', rec, 'state') ~= 'running' then
  return 'ENDED'
end
if tonumber(redis.call('HGET', rec, 'page') or '0') >= tonumber(page) then
  return 'SEEN'
end
redis.call('HSET', rec, 'page', page, 'cursor', cursor, 'updated', now)
redis.call('EXPIRE', rec, ttl)
redis.call('HINCRBY', rec, 'resources', n)
if total ~= '' then
  redis.call('HSET', rec, 'total', total)
end
redis.call('XADD', outbox, '*', 'id', ev_id, 'subject', ev_subject, 'event', ev)
redis.call('ZADD', running, 'XX', now, id)
if final == '1' then
  redis.call('ZREM', running, id)
  redis.call('HSET', rec, 'state', 'completed', 'ended', now)
  redis.call('XADD', outbox, '*', 'id', done_id, 'subject', done_subject, 'event', done_ev)
  if mark ~= '' then
    redis.call('SET', mark_key, mark)
  end
end
return 'OK'
