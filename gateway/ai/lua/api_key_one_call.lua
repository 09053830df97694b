-- A single Redis only (decision 0023): an AI call's key check and the user's (the plan's) requests
-- per minute in one call, composed at start-up (gateway/core/lua_scripts.py) from the scripts the
-- per-slot calls of a Redis Cluster run: api_key() is lua/api_key.lua, counter()
-- lua/api_key_tokens.lua. Same keys, same outcomes; atomic as one call.
-- KEYS api_key.lua's KEYS
-- ARGV[1..2] the user's minute key before and after the user id (the id is on the key's record: the
--   key is named here, undeclared, which only a single Redis allows)  ARGV[3] counter ttl ms
-- ARGV[4..] api_key.lua's ARGV
local key_args = tail(ARGV, 4)
local reply = api_key(KEYS, key_args)
if reply[1] ~= 'ok' then return reply end
local plan_rpm = tonumber(reply[10] or '0')
if plan_rpm <= 0 then return reply end
local user = ARGV[1] .. reply[3] .. ARGV[2]
local minute = tonumber(key_args[4])
if counter({user .. key_args[4], user .. string.format('%d', minute - 1)},
           {1, plan_rpm, key_args[1], ARGV[3]}) == 1 then
  return reply
end
-- Refused: the key's count of this call is taken back.
counter({KEYS[2], KEYS[2]}, {-1, 0, 0, ARGV[3]})
return {'rate_limited', 'plan', plan_rpm, key_args[3]}
