-- get(scope, key): the live record (layout in begin.lua), or nil when absent or expired.
-- KEYS[1] the record. ARGV: clock offset ms.

-- clock() (clock.lua) only with a clock offset: a record Redis still holds is live
-- (see begin.lua).
local cur = redis.call('GET', KEYS[1])
if not cur then
  return false
end
local _, _, _, exp = struct.unpack('>c1ddd', cur, 33)
if offset ~= 0 and exp <= clock() then
  return false
end
return cur
