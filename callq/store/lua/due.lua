-- due.lua: what the feeders have to do now, and when they next will (one round trip a pass).
-- KEYS[1] wake zset (campaign -> ms: judge the campaign)
-- KEYS[2] feeds zset (account -> ms: feed the account)
-- ARGV[1] the most campaigns to return
-- ARGV[2] the most accounts to return ('' = ARGV[1])
-- ARGV[3] the turn's lease in ms ('' = none: the accounts are only listed, and the caller
--         takes each one's turn with feed_turn.lua)
-- With a lease, each account returned is this caller's turn, taken here as feed_turn.lua
-- takes it (its due time moves to now + lease, so no other feeder takes it until the holder
-- sets the real next due time, or the lease runs out). Feeders polling at once then get
-- disjoint accounts, instead of all trying the same ones (a herd: with W feeders, W - 1
-- refused turns for each account fed).
-- Returns {now_ms, {campaigns due}, {accounts due}, next_ms}, where next_ms is the earliest
-- score left in either set after those returned (-1 when there is none), on the Redis clock.
local now = now_ms()
local n = tonumber(ARGV[1])
local n_accounts = tonumber(ARGV[2] or '') or n
local lease = tonumber(ARGV[3] or '')
local campaigns = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, n)
local accounts = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, n_accounts)
local skips = {#campaigns, #accounts}
if lease and #accounts > 0 then
  local pairs_ = {}
  for i, account in ipairs(accounts) do
    pairs_[2 * i - 1] = now + lease
    pairs_[2 * i] = account
  end
  redis.call('ZADD', KEYS[2], unpack(pairs_))
  skips[2] = 0 -- the claimed accounts now lie ahead: the head is whatever is earliest
end
local next_ms = -1
for i = 1, 2 do
  local head = redis.call('ZRANGE', KEYS[i], skips[i], skips[i], 'WITHSCORES')
  if head[2] then
    local at = tonumber(head[2])
    if next_ms < 0 or at < next_ms then next_ms = at end
  end
end
return {now, campaigns, accounts, next_ms}
