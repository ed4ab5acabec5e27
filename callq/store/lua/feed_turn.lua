-- feed_turn.lua: take the turn to feed one account, if it is due and nobody holds it.
-- KEYS[1] feeds zset (account -> ms when its feed is next due)
-- ARGV[1] account   ARGV[2] the turn's lease in ms
-- The due time moves to now + lease: no other feeder takes the account until the holder
-- sets the real next due time (or dies, and the lease runs out).
-- Returns 1 when the caller holds the turn, 0 when the account is not due (or not fed).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local now = now_ms()
if tonumber(score) > now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
