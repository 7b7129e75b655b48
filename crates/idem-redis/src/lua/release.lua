-- release(scope, key, token): remove the record if it is in progress under `token` and
-- live (held.lua).
-- KEYS[1] the record (layout in begin.lua). ARGV: clock offset ms, token.
-- Returns 1 when removed, 0 when fenced.
if not held(KEYS[1], ARGV[2]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
