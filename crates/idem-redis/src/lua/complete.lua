-- complete(scope, key, token, response): store the response if the record is in
-- progress under `token` and live, as idem::decide::holds says.
-- KEYS[1] the record. ARGV: clock offset ms, token (decimal), encoded response.
-- Returns 1 when stored, 0 when fenced.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])

local rec = KEYS[1]
local cur = redis.call('HMGET', rec, 'st', 'tok', 'exp')
if cur[1] ~= 'p' or cur[2] ~= ARGV[2] or tonumber(cur[3]) <= now then
  return 0
end
redis.call('HSET', rec, 'st', 'c', 'resp', ARGV[3])
return 1
