-- due.lua: what the feeders have to do now, and when they next will (one round trip a pass).
-- KEYS[1] wake zset (campaign -> ms: judge the campaign)
-- KEYS[2] feeds zset (account -> ms: feed the account)
-- ARGV[1] the most campaigns and the most accounts to return
-- Returns {now_ms, {campaigns due}, {accounts due}, next_ms}, where next_ms is the earliest
-- score left in either set after those returned (-1 when there is none), on the Redis clock.
local now = now_ms()
local n = tonumber(ARGV[1])
local campaigns = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, n)
local accounts = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, n)
local next_ms = -1
for i = 1, 2 do
  local skip = #campaigns
  if i == 2 then skip = #accounts end
  local head = redis.call('ZRANGE', KEYS[i], skip, skip, 'WITHSCORES')
  if head[2] then
    local at = tonumber(head[2])
    if next_ms < 0 or at < next_ms then next_ms = at end
  end
end
return {now, campaigns, accounts, next_ms}
