-- One round trip in the API key's hash slot: the key's cached record and its own request limits.
-- The user's (the plan's) requests per minute live in the user's slot and are admitted next by a
-- call of their own (api_key_tokens.lua; decision 0023) on a Redis Cluster; on a single Redis the
-- two run in one call, this script as a function of api_key_one_call.lua.
-- KEYS[1] record hash  KEYS[2..3] key requests this/previous minute
-- KEYS[4..5] key tokens this/previous minute
-- ARGV[1] weight of the previous minute in per-mille (sliding-window approximation)
-- ARGV[2] counter ttl ms  ARGV[3] ms until this minute ends  ARGV[4] this minute's number
-- ARGV[5..] optional fill: field, value pairs (written only if no record exists, so a
--   revocation tombstone is never overwritten), then ARGV[#] = record ttl ms
if #ARGV > 4 and redis.call('EXISTS', KEYS[1]) == 0 then
  local fields = {}
  for i = 5, #ARGV - 1 do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], ARGV[#ARGV])
end
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return {'miss'} end
local r = {}
for i = 1, #record, 2 do r[record[i]] = record[i + 1] end
if r.state ~= 'ok' then return {r.state} end

local weight = tonumber(ARGV[1]) / 1000
local function estimate(current, previous)
  return tonumber(redis.call('GET', current) or '0') + math.floor(tonumber(redis.call('GET', previous) or '0') * weight)
end
local rpm, tpm = tonumber(r.rpm), tonumber(r.tpm)
if rpm > 0 and estimate(KEYS[2], KEYS[3]) >= rpm then return {'rate_limited', 'key_rpm', rpm, ARGV[3]} end
if tpm > 0 and estimate(KEYS[4], KEYS[5]) >= tpm then return {'rate_limited', 'key_tpm', tpm, ARGV[3]} end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
-- The account id travels on the record, so a hold needs no account lookup (issue 8); the plan's
-- limit, so the gateway can admit the request in the user's window.
return {'ok', r.key_id, r.user_id, r.models, r.ips, r.expires_ms, r.rpm, r.tpm, r.account_id or '', r.plan_rpm or '0'}
