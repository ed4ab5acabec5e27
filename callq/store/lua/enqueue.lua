-- enqueue.lua: write one call record in state `queued`, once, and hand it to the workers.
-- KEYS[1] call hash          KEYS[2] campaign counts hash
-- KEYS[3] campaign calls list KEYS[4] campaigns set
-- KEYS[5] the broker's queue list (kombu's Redis transport), or any key when ARGV[3] is ''
-- KEYS[6] deadlines zset   KEYS[7] campaign meta hash
-- KEYS[8] campaign parked zset   KEYS[9] wake zset
-- KEYS[10] campaigns by id zset (lex index of KEYS[4], all scores 0: the API's paged list)
-- ARGV[1] request id   ARGV[2] campaign id
-- ARGV[3] the task message to LPUSH onto KEYS[5] (a priority call), or '' to park the call:
--         the sweepers then feed the campaign's calls to the queue at its account's pace
-- ARGV[4] ms until the sweeper republishes a call still queued (a pushed message lost in
--         transit; a parked call needs none: the parked set is its pointer)
-- ARGV[5..] field, value, ... (the call's data)
-- Returns 1 when the record was created (and pushed or parked), 2 when it exists and is still
-- `queued` (pushed again, or parked again if it is not: a copy is harmless, the claim is
-- atomic), 0 when it exists in any other state, 3 when the campaign was cancelled (nothing
-- written). An existing record is never changed. Record and its pointer are written in one
-- step: a record never exists without a way back to a worker.
if redis.call('HGET', KEYS[7], 'cancelled') == '1' then return 3 end
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'queued' then return 0 end
local now = now_ms()
local created = now
if state then created = tonumber(redis.call('HGET', KEYS[1], 'created_at')) or now end
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[5], ARGV[3])
else
  redis.call('ZADD', KEYS[8], 'NX', created, ARGV[1])
  local cur = redis.call('ZSCORE', KEYS[9], ARGV[2])
  if not cur or tonumber(cur) > now then redis.call('ZADD', KEYS[9], now, ARGV[2]) end
end
if state then return 2 end
redis.call('HSET', KEYS[1], 'request_id', ARGV[1], 'campaign', ARGV[2], 'state', 'queued',
  'attempts', 0, 'sent', 0, 'created_at', now, 'updated_at', now)
if #ARGV > 4 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[6], now + tonumber(ARGV[4]), ARGV[1])
else
  redis.call('HSET', KEYS[1], 'parked', 'new')
end
redis.call('HINCRBY', KEYS[2], 'queued', 1)
redis.call('HINCRBY', KEYS[2], 'total', 1)
redis.call('RPUSH', KEYS[3], ARGV[1])
if redis.call('SADD', KEYS[4], ARGV[2]) == 1 then redis.call('ZADD', KEYS[10], 0, ARGV[2]) end
return 1
