-- now(): the store's clock, Redis TIME in milliseconds plus the handle's offset.
-- ARGV: clock offset ms.
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
