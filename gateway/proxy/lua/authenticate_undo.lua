-- A use the user's window refused spends nothing in the token's slot either: its entry leaves the
-- token's window, and the device binding is put back as it was (decision 0023).
-- KEYS[1] device binding  KEYS[2] token window  (the token's hash tag, as in authenticate.lua)
-- ARGV[1] member  ARGV[2] the use's now_ms  ARGV[3] the use's device
-- ARGV[4..6] the binding before the use: device ('' = none), started_ms, last_ms  ARGV[7] device_idle_ms
redis.call('ZREM', KEYS[2], ARGV[1])
local bound = redis.call('HMGET', KEYS[1], 'device', 'last_ms')
-- Only a binding as this use left it: a later use of the token has made it its own.
if bound[1] ~= ARGV[3] or tonumber(bound[2] or '0') ~= tonumber(ARGV[2]) then return 0 end
local left_ms = tonumber(ARGV[6]) + tonumber(ARGV[7]) - tonumber(ARGV[2])
if ARGV[4] == '' or left_ms <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'device', ARGV[4], 'started_ms', ARGV[5], 'last_ms', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], left_ms)
end
return 1
