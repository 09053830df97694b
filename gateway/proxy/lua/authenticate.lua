-- One round trip in the token's own hash slot: token record, device binding, the token's window.
-- The client IP's and the user's windows live in their own slots and are admitted by their own
-- calls (lua/window.lua) before and after this one on a Redis Cluster; on a single Redis the three
-- run in one call, this script as a function of lua/authenticate_one_call.lua (decision 0023).
-- KEYS[1] record hash  KEYS[2] device binding  KEYS[3] token window
-- KEYS[4] in mode 'session': the browser session's record (tagged like the token's keys: decision 0020)
-- ARGV[1] now_ms  ARGV[2] device_id ('' in mode 'session')  ARGV[3] device_idle_ms  ARGV[4] window_ms
-- ARGV[5] member (unique per request, made by the gateway)
-- ARGV[6] mode: 'use' | 'peek' | 'session' (a use whose device is the browser session's)
-- ARGV[7..13] optional fill: state user_id token_id scope expires_ms limit ttl_ms
--   (written only if no record exists, so a revocation tombstone is never overwritten)
-- ARGV[14..15] with a fill: a device binding made while Redis was down (device, last_ms; '' = none),
--   seeded only if Redis holds no binding (it came back empty)
-- ARGV[16..19] optional session fill (after a token fill): state ('ok' | 'unknown' | 'ended') device
--   expires_ms ttl_ms, written only if no session record exists (an ended session's tombstone stays)
-- A use answers the binding as it was before (device, started_ms, last_ms) after its own fields, so
-- the gateway can put it back when the user's window refuses the request (lua/authenticate_undo.lua).
local now = tonumber(ARGV[1])
local device = ARGV[2]
local idle_ms = tonumber(ARGV[3])
local window_ms = tonumber(ARGV[4])
local member = ARGV[5]
local mode = ARGV[6]

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

if ARGV[7] and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', ARGV[7], 'user_id', ARGV[8], 'token_id', ARGV[9],
             'scope', ARGV[10], 'expires_ms', ARGV[11], 'limit', ARGV[12])
  redis.call('PEXPIRE', KEYS[1], ARGV[13])
  if ARGV[14] and ARGV[14] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then
    local left_ms = tonumber(ARGV[15]) + idle_ms - now
    if left_ms > 0 then
      redis.call('HSET', KEYS[2], 'device', ARGV[14], 'started_ms', ARGV[15], 'last_ms', ARGV[15])
      redis.call('PEXPIRE', KEYS[2], left_ms)
    end
  end
end

-- A browser session stands for a device: the one that opened it (decision 0020).
if mode == 'session' then
  if ARGV[16] and redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('HSET', KEYS[4], 'state', ARGV[16], 'device', ARGV[17], 'expires_ms', ARGV[18])
    redis.call('PEXPIRE', KEYS[4], ARGV[19])
  end
  local session = redis.call('HMGET', KEYS[4], 'state', 'device', 'expires_ms')
  if not session[1] then return {'session_miss'} end
  local refusal = nil
  if session[1] == 'unknown' then refusal = 'session_unknown'
  elseif session[1] ~= 'ok' then refusal = 'session_ended'
  elseif tonumber(session[3]) <= now then refusal = 'session_expired' end
  if refusal then return {refusal} end
  device = session[2]
  mode = 'use'
end

local rec = redis.call('HMGET', KEYS[1], 'state', 'user_id', 'token_id', 'scope', 'expires_ms', 'limit')
local state = rec[1]
if not state then return {'miss'} end
local expires_ms = tonumber(rec[5] or '0')
if state == 'ok' and expires_ms <= now then state = 'expired' end
if state ~= 'ok' then return {state} end
local limit = tonumber(rec[6])

-- Device binding: held by one device until it has been idle for idle_ms.
local bound = redis.call('HMGET', KEYS[2], 'device', 'last_ms', 'started_ms')
local bound_device, last_ms = bound[1], tonumber(bound[2] or '0')
local active = bound_device and (now - last_ms) < idle_ms
if mode == 'peek' then
  local holder = ''
  if active then holder = bound_device end
  return {'ok', rec[2], rec[3], rec[4], rec[5], limit, -1, 0, holder, last_ms}
end
if active and bound_device ~= device then
  return {'device_conflict', last_ms + idle_ms - now}
end

-- The token's window; the user's is admitted next, in the user's slot (decision 0023).
local limit_remaining, reset_ms = check(KEYS[3], limit)
if limit_remaining == nil then return {'rate_limited', 'token', limit, reset_ms} end
record(KEYS[3], limit)

if not active or bound_device ~= device then
  redis.call('HSET', KEYS[2], 'device', device, 'started_ms', now)
end
redis.call('HSET', KEYS[2], 'last_ms', now)
redis.call('PEXPIRE', KEYS[2], idle_ms)
return {'ok', rec[2], rec[3], rec[4], rec[5], limit, limit_remaining, reset_ms, device,
        bound_device or '', bound[3] or '0', bound[2] or '0'}
