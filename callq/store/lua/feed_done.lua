-- feed_done.lua: end a feed pass: set the account's next pass, or drop the account from the
-- feeds set when no campaign is left in its feed.
-- KEYS[1] the account's feed zset   KEYS[2] feeds zset
-- ARGV[1] account   ARGV[2] when the next pass is due: epoch ms, Redis clock
-- One step with feed_join.lua's "join, then make the account due": a campaign that joins
-- during the pass is fed by the next one.
-- Returns 1 when the next pass is set, 0 when the account has nothing left to feed.
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[1])
return 1
