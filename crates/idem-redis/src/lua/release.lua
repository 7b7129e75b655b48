-- release(scope, key, token): remove the record if it is in progress under `token`
-- and live, as idem::decide::holds says.
-- KEYS[1] the record (layout in begin.lua). ARGV: clock offset ms, token.
-- Returns 1 when removed, 0 when fenced.

-- clock() (clock.lua) only with a clock offset: a record Redis still holds is live
-- (see begin.lua).
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
