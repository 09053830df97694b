-- A single Redis only (decision 0023): the whole desktop check in one call, composed at start-up
-- (gateway/core/lua_scripts.py) from the scripts the per-slot calls of a Redis Cluster run:
-- window() is lua/window.lua, authenticate() lua/authenticate.lua, authenticate_undo()
-- lua/authenticate_undo.lua. Same keys, same order, same outcomes; atomic as one call.
-- KEYS[1] the client IP's window  KEYS[2..] authenticate.lua's KEYS
-- ARGV[1] the IP's limit (0 = none, or counted by this request's earlier call: a cache miss)
-- ARGV[2..3] the user's window key before and after the user id (the id is on the token's record:
--   the key is named here, undeclared, which only a single Redis allows)
-- ARGV[4..] authenticate.lua's ARGV
-- Answers {authenticate's answer, the IP window's answer or {}, the user window's answer or {}}; a
-- refusal by the IP's or the user's window replaces authenticate's answer.
local token_args = tail(ARGV, 4)
local now, window_ms, member = token_args[1], token_args[4], token_args[5]
local ip_limit = tonumber(ARGV[1])
local ip = {}
if ip_limit > 0 then
  -- The IP's window first: a full one refuses before the token is looked at.
  ip = window({KEYS[1]}, {now, window_ms, ip_limit, member})
  if ip[1] == 0 then return {{'rate_limited', 'ip', ip_limit, ip[3]}, ip, {}} end
end
local reply = authenticate(tail(KEYS, 2), token_args)
if reply[1] ~= 'ok' or token_args[6] == 'peek' then return {reply, ip, {}} end
local limit = tonumber(reply[6])
if limit <= 0 then return {reply, ip, {}} end
local user = window({ARGV[2] .. reply[2] .. ARGV[3]}, {now, window_ms, limit, member})
if user[1] == 0 then
  -- A refused use spends nothing in the token's keys either.
  authenticate_undo({KEYS[3], KEYS[4]}, {member, now, reply[9], reply[10], reply[11], reply[12], token_args[3]})
  return {{'rate_limited', 'user', limit, user[3]}, ip, user}
end
return {reply, ip, user}
