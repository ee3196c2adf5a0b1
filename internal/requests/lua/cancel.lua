-- cancel marks a batch cancelled: the feeder releases none of its queued
-- requests any more (it ends them as cancelled), and a released one that
-- has not run ends as cancelled when a worker picks it up.
--
-- KEYS[1] b:<batch>
-- ARGV    now
-- Returns 'OK' or 'NOTFOUND'.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'NOTFOUND'
end
redis.call('HSETNX', KEYS[1], 'cancel', ARGV[1])
return 'OK'
