-- purge_one(scope, key): delete the record if it has expired by the store's clock.
-- KEYS[1] a record (layout in begin.lua). ARGV: clock offset ms.
-- Returns 1 when deleted, 0 otherwise (absent, live, or not a record).

-- pcall: a key of another type under the prefix is skipped, not an error.
local cur = redis.pcall('GET', KEYS[1])
if type(cur) ~= 'string' or #cur < 65 then
  return 0
end
local _, _, _, exp = struct.unpack('>c1ddd', cur, 33)
if exp > clock() then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
