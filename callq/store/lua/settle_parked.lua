-- settle_parked.lua: end parked calls of one campaign (it was cancelled, or its end_at passed).
-- KEYS[1] campaign parked zset   KEYS[2] wake zset   KEYS[3] campaign counts hash
-- KEYS[4] deadlines zset   KEYS[5..] the call hash of each request id below, in order
-- ARGV[1] campaign id   ARGV[2] the final state: 'cancelled' or 'expired'
-- ARGV[3..] request ids
-- Then, when events are sent onward: KEYS[#KEYS - 1] events stream, KEYS[#KEYS] campaign
-- events hash (see prelude's emit_final), and ARGV[#ARGV] the events flag; each call settled
-- is final (its event). Without them (KEYS count 4 + the ids, ARGV 2 + the ids), none is.
-- Each call still waiting (`queued`, `retrying`) takes the final state, counters moved in the
-- same step; every id given leaves the parked set. The wake entry goes when the set is empty.
-- Returns {settled, left}.
local now = now_ms()
local to = ARGV[2]
local settled = 0
local last, stream, evhash, flag = #ARGV, nil, nil, ''
if #KEYS == #ARGV + 3 then
  last, flag = #ARGV - 1, ARGV[#ARGV]
  stream, evhash = KEYS[#KEYS - 1], KEYS[#KEYS]
end
for i = 3, last do
  local rid = ARGV[i]
  local key = KEYS[i + 2]
  if redis.call('ZREM', KEYS[1], rid) == 1 then
    local state = redis.call('HGET', key, 'state')
    if state == 'queued' or state == 'retrying' then
      move(key, KEYS[3], state, to, now)
      redis.call('HDEL', key, 'next_at', 'parked')
      redis.call('ZREM', KEYS[4], rid)
      if stream then emit_final(key, KEYS[3], stream, evhash, rid, flag, now) end
      settled = settled + 1
    end
  end
end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return {settled, left}
