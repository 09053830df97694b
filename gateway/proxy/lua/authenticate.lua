-- One round trip for the desktop hot path: token record, device binding, rate-limit windows.
-- KEYS[1] record hash  KEYS[2] device binding  KEYS[3] token window  KEYS[4] ip window
-- KEYS[5] in mode 'session': the browser session's record (tagged like the token's keys: decision 0020)
-- ARGV[1] now_ms  ARGV[2] device_id ('' in mode 'session')  ARGV[3] device_idle_ms  ARGV[4] window_ms
-- ARGV[5] ip_limit  ARGV[6] member (unique per request, made by the gateway)
-- ARGV[7] mode: 'use' | 'peek' | 'session' (a use whose device is the browser session's)
-- ARGV[8..14] optional fill: state user_id token_id scope expires_ms limit ttl_ms
--   (written only if no record exists, so a revocation tombstone is never overwritten)
-- ARGV[15..16] with a fill: a device binding made while Redis was down (device, last_ms; '' = none),
--   seeded only if Redis holds no binding (it came back empty)
-- ARGV[17..20] optional session fill (after a token fill): state ('ok' | 'unknown' | 'ended') device
--   expires_ms ttl_ms, written only if no session record exists (an ended session's tombstone stays)
local now = tonumber(ARGV[1])
local device = ARGV[2]
local idle_ms = tonumber(ARGV[3])
local window_ms = tonumber(ARGV[4])
local ip_limit = tonumber(ARGV[5])
local member = ARGV[6]
local mode = ARGV[7]

-- Sliding-window log: (remaining after this request, ms until the oldest entry leaves), or nil when full.
local function check(key, limit_n)
  if limit_n <= 0 then return -1, 0 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
  local count = redis.call('ZCARD', key)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local reset_ms = window_ms
  if oldest[2] then reset_ms = tonumber(oldest[2]) + window_ms - now end
  if count >= limit_n then return nil, reset_ms end
  return limit_n - count - 1, reset_ms
end
local function record(key, limit_n)
  if limit_n > 0 then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, window_ms)
  end
end

-- The client IP's window comes first: bad and unknown tokens count against it too.
local ip_remaining, ip_reset = check(KEYS[4], ip_limit)
if ip_remaining == nil then return {'rate_limited', 'ip', ip_limit, ip_reset} end

if ARGV[8] and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', ARGV[8], 'user_id', ARGV[9], 'token_id', ARGV[10],
             'scope', ARGV[11], 'expires_ms', ARGV[12], 'limit', ARGV[13])
  redis.call('PEXPIRE', KEYS[1], ARGV[14])
  if ARGV[15] and ARGV[15] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then
    local left_ms = tonumber(ARGV[16]) + idle_ms - now
    if left_ms > 0 then
      redis.call('HSET', KEYS[2], 'device', ARGV[15], 'started_ms', ARGV[16], 'last_ms', ARGV[16])
      redis.call('PEXPIRE', KEYS[2], left_ms)
    end
  end
end

-- A browser session stands for a device: the one that opened it (decision 0020).
if mode == 'session' then
  if ARGV[17] and redis.call('EXISTS', KEYS[5]) == 0 then
    redis.call('HSET', KEYS[5], 'state', ARGV[17], 'device', ARGV[18], 'expires_ms', ARGV[19])
    redis.call('PEXPIRE', KEYS[5], ARGV[20])
  end
  local session = redis.call('HMGET', KEYS[5], 'state', 'device', 'expires_ms')
  if not session[1] then return {'session_miss'} end
  local refusal = nil
  if session[1] == 'unknown' then refusal = 'session_unknown'
  elseif session[1] ~= 'ok' then refusal = 'session_ended'
  elseif tonumber(session[3]) <= now then refusal = 'session_expired' end
  if refusal then
    record(KEYS[4], ip_limit)
    return {refusal}
  end
  device = session[2]
  mode = 'use'
end

local rec = redis.call('HMGET', KEYS[1], 'state', 'user_id', 'token_id', 'scope', 'expires_ms', 'limit')
local state = rec[1]
if not state then return {'miss'} end
local expires_ms = tonumber(rec[5] or '0')
if state == 'ok' and expires_ms <= now then state = 'expired' end
if state ~= 'ok' then
  record(KEYS[4], ip_limit)
  return {state}
end
local limit = tonumber(rec[6])

-- Device binding: held by one device until it has been idle for idle_ms.
local bound = redis.call('HMGET', KEYS[2], 'device', 'last_ms')
local bound_device, last_ms = bound[1], tonumber(bound[2] or '0')
local active = bound_device and (now - last_ms) < idle_ms
if mode == 'peek' then
  record(KEYS[4], ip_limit)
  local holder = ''
  if active then holder = bound_device end
  return {'ok', rec[2], rec[3], rec[4], rec[5], limit, -1, 0, holder, last_ms}
end
if active and bound_device ~= device then
  record(KEYS[4], ip_limit)
  return {'device_conflict', last_ms + idle_ms - now}
end

-- Per token and per user; all windows must admit the request before any of them records it.
-- The user window's key is derived here (not in KEYS): see docs/decisions/0001.
local user_key = 'tg:rl:u:' .. rec[2]
local windows = {{KEYS[3], limit, 'token'}, {user_key, limit, 'user'}}
local best_remaining, best_limit, best_reset = ip_remaining, ip_limit, ip_reset
if ip_limit <= 0 then best_limit = 0 end
for _, w in ipairs(windows) do
  local remaining, reset_ms = check(w[1], w[2])
  if remaining == nil then
    record(KEYS[4], ip_limit)
    return {'rate_limited', w[3], w[2], reset_ms}
  end
  if remaining >= 0 and (best_remaining < 0 or remaining < best_remaining) then
    best_remaining, best_limit, best_reset = remaining, w[2], reset_ms
  end
end
record(KEYS[3], limit)
record(user_key, limit)
record(KEYS[4], ip_limit)

if not active or bound_device ~= device then
  redis.call('HSET', KEYS[2], 'device', device, 'started_ms', now)
end
redis.call('HSET', KEYS[2], 'last_ms', now)
redis.call('PEXPIRE', KEYS[2], idle_ms)
return {'ok', rec[2], rec[3], rec[4], rec[5], best_limit, best_remaining, best_reset, device}
