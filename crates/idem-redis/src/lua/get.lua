-- get(scope, key): the live record (layout in begin.lua), or nil when absent or expired.
-- KEYS[1] the record. ARGV: clock offset ms.

-- The store's clock, read only when needed (see begin.lua: a record Redis still holds is
-- live unless the handle has a clock offset).
local offset = tonumber(ARGV[1])
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset
end

local cur = redis.call('GET', KEYS[1])
if not cur then
  return false
end
local _, _, _, exp = struct.unpack('>c1ddd', cur, 33)
if offset ~= 0 and exp <= clock() then
  return false
end
return cur
