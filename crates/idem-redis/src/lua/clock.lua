-- The prelude of every script (scripts.rs puts it first): the store's clock, Redis TIME
-- in milliseconds plus the handle's clock offset, which every script takes as ARGV[1].
-- Scripts call clock() only when they need the time (see begin.lua).
local offset = tonumber(ARGV[1])
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset
end

