-- unpark.lua: move parked calls of one campaign onto the broker queue, each at most once (the
-- feed's messages carry each call's permit; a priority campaign's messages carry none).
-- KEYS[1] campaign parked zset   KEYS[2] wake zset   KEYS[3] campaign meta hash
-- KEYS[4] deadlines zset   KEYS[5] the queue list (`calls`, or `calls.priority` for a
-- priority campaign)   KEYS[6..] the call hash of each request id below, in order
-- ARGV[1] campaign id   ARGV[2] ms until a republished call counts as overdue (sweeper guard)
-- ARGV[3] ms until the campaign is next judged while calls remain parked; '' leaves the
--         judge's own time (the feed's passes), or sets now when the campaign has none
-- ARGV[4] the campaign's end_at in epoch ms, or ''
-- ARGV[5] a judge's: the controls' version it read (the meta's `v`); a feed pass: ''
-- ARGV[6] '1': LPUSH each message onto KEYS[5] here; '': the broker is another Redis
--         (LEDGER_REDIS_URL), the script touches none of its keys (KEYS[5] is then any key
--         of the ledger's) and returns the messages of the calls it moved, for the caller to
--         LPUSH after it. A crash in between leaves those calls waiting, off the parked set,
--         with their deadline ARGV[2] ahead: the sweeper republishes them then.
-- ARGV[7..] request id, task message; repeated
-- Nothing moves while the campaign is paused. A judge (ARGV[3] given) drops its wake entry
-- (resume adds it back), or sets it to end_at when it has one (its parked calls then expire,
-- paused or not). A feed pass (ARGV[3] '') leaves the wake to the judge, and makes sure there
-- is one (its controls may be older than the pause). A judge whose controls are older than
-- the meta's (a pause, resume, set or cancel since) leaves the wake alone: their writer set
-- it to now, for a judge that reads them.
-- A call is pushed only if this script removed it from the parked set and it still waits
-- (`queued` or `retrying`): many sweepers may drain at once and none pushes a call twice.
-- Returns {moved, left, message...}: calls pushed (or to push), calls still parked (-1, -1
-- when paused), then with ARGV[6] '' the messages to push, in order.
local meta = redis.call('HMGET', KEYS[3], 'paused', 'v')
local stale = ARGV[3] ~= '' and (meta[2] or '') ~= ARGV[5]
if meta[1] == '1' then
  if stale then
    return {-1, -1}
  elseif ARGV[3] == '' then
    redis.call('ZADD', KEYS[2], 'NX', now_ms(), ARGV[1])
  elseif ARGV[4] ~= '' then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), ARGV[1])
  else
    redis.call('ZREM', KEYS[2], ARGV[1])
  end
  return {-1, -1}
end
local now = now_ms()
local moved = 0
local push_here = ARGV[6] == '1'
local out = {}
local k = 6
for i = 7, #ARGV, 2 do
  local rid = ARGV[i]
  if redis.call('ZREM', KEYS[1], rid) == 1 then
    local state = redis.call('HGET', KEYS[k], 'state')
    if state == 'queued' or state == 'retrying' then
      redis.call('HDEL', KEYS[k], 'parked')
      if push_here then
        redis.call('LPUSH', KEYS[5], ARGV[i + 1])
      else
        out[#out + 1] = ARGV[i + 1]
      end
      redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), rid)
      moved = moved + 1
    end
  end
  k = k + 1
end
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
elseif stale then
  redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1])
elseif ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
else
  redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1])
end
return {moved, left, unpack(out)}
