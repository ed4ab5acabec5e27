-- enqueue.lua: write one call record in state `queued`, once, and its task message with it.
-- KEYS[1] call hash          KEYS[2] campaign counts hash
-- KEYS[3] campaign calls list KEYS[4] campaigns set
-- KEYS[5] the broker's queue list (kombu's Redis transport), or any key when ARGV[3] is ''
-- KEYS[6] deadlines zset   KEYS[7] campaign meta hash
-- ARGV[1] request id   ARGV[2] campaign id
-- ARGV[3] the task message to LPUSH onto KEYS[5] ('' = none)
-- ARGV[4] ms until the sweeper republishes a call still queued (a message lost in transit)
-- ARGV[5..] field, value, ... (the call's data)
-- Returns 1 when the record was created (and its message pushed), 2 when it exists and is
-- still `queued` (its message is pushed again: a copy is harmless, the claim is atomic), 0 when
-- it exists in any other state, 3 when the campaign was cancelled (nothing written). An
-- existing record is never changed. Record and message are written in one step: a record
-- never exists without its task.
if redis.call('HGET', KEYS[7], 'cancelled') == '1' then return 3 end
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'queued' then return 0 end
if ARGV[3] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[3]) end
if state then return 2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'request_id', ARGV[1], 'campaign', ARGV[2], 'state', 'queued',
  'attempts', 0, 'sent', 0, 'created_at', now, 'updated_at', now)
if #ARGV > 4 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[4]), ARGV[1])
redis.call('HINCRBY', KEYS[2], 'queued', 1)
redis.call('HINCRBY', KEYS[2], 'total', 1)
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return 1
