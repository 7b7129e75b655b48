-- release(scope, key, token): remove the record if it is in progress under `token`
-- and live, as idem::decide::holds says.
-- KEYS[1] the record (layout in begin.lua). ARGV: clock offset ms, token.
-- Returns 1 when removed, 0 when fenced.

-- The store's clock, read only when needed (see begin.lua: a record Redis still holds is
-- live unless the handle has a clock offset).
local offset = tonumber(ARGV[1])
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset
end

local cur = redis.call('GET', KEYS[1])
if not cur then
  return 0
end
local st, held, lease, exp = struct.unpack('>c1ddd', cur, 33)
if st ~= 'p' or held ~= tonumber(ARGV[2]) or (offset ~= 0 and exp <= clock()) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
