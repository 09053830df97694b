-- A per-minute counter of one hash slot, estimated over a sliding minute. Tokens per minute of an
-- API key: a call reserves its token bound before it is forwarded, and its settlement corrects the
-- reservation to the tokens really used (decision 0011). Also the user's (the plan's) requests per
-- minute, in the user's slot, and the take-back of a request it refused (decision 0023).
-- KEYS[1] this minute's counter  KEYS[2] the previous minute's (same hash tag)
-- ARGV[1] tokens to add (a correction may be negative)
-- ARGV[2] the key's limit: > 0 reserves, refused (0) when the sliding estimate has reached it;
--         0 corrects, and only while the counter exists (an expired window is not brought back)
-- ARGV[3] weight of the previous minute in per-mille  ARGV[4] counter ttl ms
local limit = tonumber(ARGV[2])
if limit > 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
    + math.floor(tonumber(redis.call('GET', KEYS[2]) or '0') * tonumber(ARGV[3]) / 1000)
  if used >= limit then return 0 end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  return 1
end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
