-- reseal swaps sealed values for the same secrets sealed again (under the
-- current master key, with the full binding), each only if it is still the
-- value the caller read and its hash still has the vendor it was sealed
-- for: a writer that changed either meanwhile wins, and that value is left
-- for the next pass. A hash that does not record a vendor yet (a rotation
-- begun before vendors were recorded) gets the one the value is sealed for.
--
-- KEYS    the hash of each value, in order
-- ARGV    4 per value: field, value read, value sealed again, vendor
-- Returns one integer per value: 1 swapped, 0 left (changed meanwhile).
local out = {}
for i = 1, #KEYS do
  local key, a = KEYS[i], (i - 1) * 4
  local field, old, new, vendor = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local cur = redis.call('HMGET', key, field, 'vendor')
  if cur[1] == old and (cur[2] == vendor or not cur[2]) then
    if not cur[2] then
      redis.call('HSET', key, 'vendor', vendor)
    end
    redis.call('HSET', key, field, new)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
