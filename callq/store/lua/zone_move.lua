-- zone_move.lua: move parked calls of one campaign between the bands of its parked set (a
-- callee-zone campaign's judge: a call whose zone opened goes to the ready band, one whose
-- zone closed goes to its zone's band; see callq.campaign.zones).
-- KEYS[1] campaign parked zset
-- ARGV[1..] request id, the score the judge read, the new score; repeated
-- A call moves only if it is still parked with the score the judge read: one fed, claimed,
-- settled or moved by another judge since is left as it is. It never leaves the set here, so
-- the campaign's wake entry (kept while the set is not empty) stays its way back.
-- Returns how many moved.
local moved = 0
for i = 1, #ARGV, 3 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if cur and tonumber(cur) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[i + 2]), ARGV[i])
    moved = moved + 1
  end
end
return moved
