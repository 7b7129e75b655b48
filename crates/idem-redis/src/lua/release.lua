-- release(scope, key, token): mark the record released ('R') if it is in progress under
-- `token` and live (held.lua). A released record is absent to every caller but keeps its
-- token until it expires, so the next begin writes a larger one (idem::decide::release_step:
-- deleting it would hand token 1 again to the next holder, a token a holder taken over
-- earlier may still carry).
-- KEYS[1] the record (layout in begin.lua). ARGV: token.
-- Returns 1 when released, 0 when fenced.
local cur = held(KEYS[1], ARGV[1])
if not cur then
  return 0
end
redis.call('SET', KEYS[1], string.sub(cur, 1, 32) .. 'R' .. string.sub(cur, 34, 57), 'KEEPTTL')
return 1
