-- release(scope, key, token): remove the record if it is in progress under `token`
-- and live, as idem::decide::holds says.
-- KEYS[1] the record (layout in begin.lua). ARGV: clock offset ms, token.
-- Returns 1 when removed, 0 when fenced.

-- The clock only with a clock offset: a record Redis still holds is live (see begin.lua).
local rec = KEYS[1]
local cur = redis.call('GET', rec)
if not cur then
  return 0
end
local st, held = struct.unpack('>c1d', cur, 33)
if st ~= 'P' or held ~= tonumber(ARGV[2]) or (offset ~= 0 and expiry(rec) <= clock()) then
  return 0
end
redis.call('DEL', rec)
return 1
