-- get(scope, key): the live record, or nil when absent or expired.
-- KEYS[1] the record. ARGV: clock offset ms.
-- Returns {fp, state, token, lease_until, expires_at, created_at, response|false}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])

local cur = redis.call('HMGET', KEYS[1], 'fp', 'st', 'tok', 'lease', 'exp', 'at', 'resp')
if not cur[1] or tonumber(cur[5]) <= now then
  return false
end
return cur
