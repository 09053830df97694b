-- A sliding-window log in a slot of its own: the client IP's window or the user's (decision 0023).
-- KEYS[1] the window  ARGV[1] now_ms  ARGV[2] window_ms  ARGV[3] limit (> 0)
-- ARGV[4] member (unique per request, made by the gateway)
-- Answers {1, remaining after this request, ms until the oldest entry leaves} and records the
-- request, or {0, 0, ms until a place frees} and records nothing when the window is full.
local now = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window_ms)
local count = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset_ms = window_ms
if oldest[2] then reset_ms = tonumber(oldest[2]) + window_ms - now end
if count >= limit then return {0, 0, reset_ms} end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window_ms)
return {1, limit - count - 1, reset_ms}
