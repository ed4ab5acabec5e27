-- feed_join.lua: an open campaign with parked calls joins its account's feed.
-- KEYS[1] the account's feed zset (campaign -> virtual time)   KEYS[2] feeds zset
-- ARGV[1] campaign id   ARGV[2] account
-- A newcomer starts at the lowest virtual time in the feed (0 when it is empty): it gets the
-- next slot, but no credit for the time it was away. A member keeps its time. The account's
-- feed becomes due now (unless it already is).
-- Returns 1 when the campaign joined, 0 when it was a member already.
local joined = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[1], tonumber(head[2]) or 0, ARGV[1])
  joined = 1
end
local now = now_ms()
redis.call('ZADD', KEYS[2], 'LT', now, ARGV[2])
return joined
