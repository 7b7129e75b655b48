-- complete(scope, key, token, response): store the response if the record is in
-- progress under `token` and live (held.lua).
-- KEYS[1] the record (layout in begin.lua). ARGV: token (decimal), encoded response.
-- Returns 1 when stored, 0 when fenced.

-- The header's times are relative to the creation, so completing changes only the state
-- and keeps the key's expiry.
local rec = KEYS[1]
local cur = held(rec, ARGV[1])
if not cur then
  return 0
end
redis.call('SET', rec, string.sub(cur, 1, 32) .. 'C' .. string.sub(cur, 34, 57) .. ARGV[2],
  'KEEPTTL')
return 1
