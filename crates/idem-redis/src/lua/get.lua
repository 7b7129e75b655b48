-- get(scope, key): {the record (layout in begin.lua), its expiry}, or nil when absent,
-- released or expired. KEYS[1] the record. ARGV: clock offset ms.

-- The clock only with a clock offset: a record Redis still holds is live (see begin.lua).
local rec = KEYS[1]
local cur = redis.call('GET', rec)
if not cur or string.sub(cur, 33, 33) == 'R' then
  return false
end
local exp = expiry(rec)
if offset ~= 0 and exp <= clock() then
  return false
end
return {cur, exp}
