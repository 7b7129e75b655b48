-- purge_one(scope, key): delete the record if it has expired by the store's clock.
-- KEYS[1] a record (layout in begin.lua). ARGV: clock offset ms.
-- Returns 1 when deleted, 0 otherwise (absent, live, or not a record).

-- pcall: a key of another type under the prefix is skipped, not an error.
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or #cur < 57 then
  return 0
end
-- A key without an expiry (expiry() = 0) was not written by this store.
local exp = expiry(KEYS[1])
if exp <= 0 or exp > clock() then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
