-- The prelude of every script (scripts.rs puts it first).
--
-- clock(): the store's clock, Redis TIME in milliseconds. Scripts call it only when they
-- need the time.
--
-- expiry(key): a record's expiry. A record's times are kept relative to its creation (see
-- begin.lua) and Redis itself holds the absolute one: the key expires at expiry - 1, so a
-- key lives while TIME < expiry, and created = expiry - life.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function expiry(key)
  return redis.call('PEXPIRETIME', key) + 1
end

