-- get(scope, key): {the record (layout in begin.lua), its expiry}, or nil when absent or
-- released. KEYS[1] the record. A record Redis still holds is live (see begin.lua).
local rec = KEYS[1]
local cur = redis.call('GET', rec)
if not cur or string.sub(cur, 33, 33) == 'R' then
  return false
end
return {cur, expiry(rec)}
