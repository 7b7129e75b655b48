-- held(key, token): the record's string when it is in progress under `token`, as
-- idem::decide::holds says; nil otherwise (absent, completed or another holder's). A
-- record Redis still holds is live (see begin.lua). complete and release act only on such
-- a record.
local function held(key, token)
  local cur = redis.call('GET', key)
  if not cur then
    return nil
  end
  local st, holder = struct.unpack('>c1d', cur, 33)
  if st ~= 'P' or holder ~= tonumber(token) then
    return nil
  end
  return cur
end

