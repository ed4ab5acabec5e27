-- slot_free.lua: free one call's live slots (EXOTEL_MAX_LIVE_CALLS) and wake the account's feed.
-- KEYS[1] the account's live-slots zset   KEYS[2] feeds zset   KEYS[3] nudge list
-- ARGV[1] request id   ARGV[2] account
-- Idempotent: a slot freed twice, or after its lease lapsed, frees nothing more. When a slot
-- was freed, the account's feed is made due now (only if it is in the feeds set and due
-- later) and a feeder is nudged: a call parked for want of a slot is fed at once, not at
-- the next tick.
-- Returns the number of slots freed (0, 1 or 2).
local freed = 0
for _, weight in ipairs({2, 1}) do
  if redis.call('ZREM', KEYS[1], weight .. ':' .. ARGV[1]) == 1 then freed = freed + weight end
end
if freed > 0 and redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], 'XX', 'LT', now_ms(), ARGV[2])
  redis.call('LPUSH', KEYS[3], ARGV[2])
  redis.call('LTRIM', KEYS[3], 0, 63)
end
return freed
