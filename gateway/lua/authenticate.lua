-- One round trip for the desktop hot path: token record, device binding, rate-limit windows.
-- KEYS[1] record hash  KEYS[2] device binding  KEYS[3] token window  KEYS[4] ip window
-- ARGV[1] now_ms  ARGV[2] device_id  ARGV[3] device_idle_ms  ARGV[4] window_ms
-- ARGV[5] ip_limit  ARGV[6] member (unique request id)  ARGV[7] mode: 'use' | 'peek'
-- ARGV[8..] optional fill: state user_id token_id scope expires_ms limit ttl_ms
--   (written only if no record exists, so a revocation tombstone is never overwritten)
local now = tonumber(ARGV[1])
local device = ARGV[2]
local idle_ms = tonumber(ARGV[3])
local window_ms = tonumber(ARGV[4])
local ip_limit = tonumber(ARGV[5])
local member = ARGV[6]
local mode = ARGV[7]

if ARGV[8] and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', ARGV[8], 'user_id', ARGV[9], 'token_id', ARGV[10],
             'scope', ARGV[11], 'expires_ms', ARGV[12], 'limit', ARGV[13])
  redis.call('PEXPIRE', KEYS[1], ARGV[14])
end

local record = redis.call('HMGET', KEYS[1], 'state', 'user_id', 'token_id', 'scope', 'expires_ms', 'limit')
local state = record[1]
if not state then return {'miss'} end
if state ~= 'ok' then return {state} end
local expires_ms = tonumber(record[5])
if expires_ms <= now then return {'expired'} end
local limit = tonumber(record[6])

-- Device binding: held by one device until it has been idle for idle_ms.
local bound = redis.call('HMGET', KEYS[2], 'device', 'last_ms', 'started_ms')
local bound_device, last_ms = bound[1], tonumber(bound[2] or '0')
local active = bound_device and (now - last_ms) < idle_ms
if mode == 'peek' then
  local holder = ''
  if active then holder = bound_device end
  return {'ok', record[2], record[3], record[4], record[5], limit, -1, 0, holder, last_ms}
end
if active and bound_device ~= device then
  return {'device_conflict', last_ms + idle_ms - now}
end

-- Sliding-window log per token, per user and per client IP; all must admit the request.
local function admit(key, limit_n)
  if limit_n <= 0 then return -1, 0 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
  local count = redis.call('ZCARD', key)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local reset_ms = window_ms
  if oldest[2] then reset_ms = tonumber(oldest[2]) + window_ms - now end
  if count >= limit_n then return nil, reset_ms end
  return limit_n - count - 1, reset_ms
end
local user_key = 'tg:rl:u:' .. record[2]
local windows = {{KEYS[3], limit, 'token'}, {user_key, limit, 'user'}, {KEYS[4], ip_limit, 'ip'}}
local best_remaining, best_limit, best_reset = -1, 0, 0
for _, w in ipairs(windows) do
  local remaining, reset_ms = admit(w[1], w[2])
  if remaining == nil then return {'rate_limited', w[3], w[2], reset_ms} end
  if remaining >= 0 and (best_remaining < 0 or remaining < best_remaining) then
    best_remaining, best_limit, best_reset = remaining, w[2], reset_ms
  end
end
for _, w in ipairs(windows) do
  if w[2] > 0 then
    redis.call('ZADD', w[1], now, member)
    redis.call('PEXPIRE', w[1], window_ms)
  end
end

local fresh = 0
if not active or bound_device ~= device then
  fresh = 1
  redis.call('HSET', KEYS[2], 'device', device, 'started_ms', now)
end
redis.call('HSET', KEYS[2], 'last_ms', now)
redis.call('PEXPIRE', KEYS[2], idle_ms)
return {'ok', record[2], record[3], record[4], record[5], best_limit, best_remaining, best_reset, device, fresh}
