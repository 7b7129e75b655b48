-- complete(scope, key, token, response): store the response if the record is in
-- progress under `token` and live, as idem::decide::holds says.
-- KEYS[1] the record (layout in begin.lua). ARGV: clock offset ms, token (decimal),
-- encoded response. Returns 1 when stored, 0 when fenced.

-- clock() (clock.lua) only with a clock offset: a record Redis still holds is live
-- (see begin.lua).
local rec = KEYS[1]
local cur = redis.call('GET', rec)
if not cur then
  return 0
end
local st, held, lease, exp, at = struct.unpack('>c1dddd', cur, 33)
if st ~= 'p' or held ~= tonumber(ARGV[2]) or (offset ~= 0 and exp <= clock()) then
  return 0
end
redis.call('SET', rec, string.sub(cur, 1, 32) .. struct.pack('>c1dddd', 'c', held, lease, exp, at)
  .. ARGV[3], 'KEEPTTL')
return 1
