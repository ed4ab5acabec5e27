-- feed_done.lua: end a feed pass: set the account's next pass, or drop the account from the
-- feeds set when no campaign is left in its feed.
-- KEYS[1] the account's feed zset   KEYS[2] feeds zset
-- ARGV[1] account   ARGV[2] when the next pass is due: epoch ms, Redis clock
-- One step with feed_join.lua's "join, then make the account due": a campaign that joins
-- during the pass is fed by the next one.
-- KEYS[3] (optional) the account's live-slots zset   ARGV[3] its cap   ARGV[4] the slots of
-- the call the cap refused: a pass the cap stopped is due now instead when slots were freed
-- since its reservation (a callback's slot_free made the account due now; this pass's end
-- must not push that back to the earliest lease), the lapsed not counted.
-- Returns 1 when the next pass is set, 0 when the account has nothing left to feed.
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local next_at = tonumber(ARGV[2])
if KEYS[3] and ARGV[3] then
  local now = now_ms()
  local used = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf')) do
    used = used + (tonumber(string.match(m, '^(%d+):')) or 1)
  end
  if used + tonumber(ARGV[4]) <= tonumber(ARGV[3]) and now < next_at then next_at = now end
end
redis.call('ZADD', KEYS[2], next_at, ARGV[1])
return 1
