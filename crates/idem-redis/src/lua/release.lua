-- release(scope, key, token): remove the record if it is in progress under `token`
-- and live, as idem::decide::holds says.
-- KEYS[1] the record, KEYS[2] the prefix's expiry index. ARGV: clock offset ms, token.
-- Returns 1 when removed, 0 when fenced.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])

local rec = KEYS[1]
local cur = redis.call('HMGET', rec, 'st', 'tok', 'exp')
if cur[1] ~= 'p' or cur[2] ~= ARGV[2] or tonumber(cur[3]) <= now then
  return 0
end
redis.call('DEL', rec)
redis.call('ZREM', KEYS[2], rec)
return 1
