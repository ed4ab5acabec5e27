-- enqueue.lua: write a batch of call records in state `queued`, each once, and hand each to
-- the workers. One call of the script per batch (not per call): the same per-row semantics,
-- in one atomic step.
-- KEYS[1] campaign counts hash   KEYS[2] campaign calls list   KEYS[3] campaigns set
-- KEYS[4] the broker's queue list (kombu's Redis transport), or any key when ARGV[3] is ''
-- KEYS[5] deadlines zset   KEYS[6] campaign meta hash
-- KEYS[7] campaign parked zset   KEYS[8] wake zset
-- KEYS[9] campaigns by id zset (lex index of KEYS[3], all scores 0: the API's paged list)
-- KEYS[10..] one call hash per row, in row order
-- ARGV[1] campaign id
-- ARGV[2] ms until the sweeper republishes a call still queued (a pushed message lost in
--         transit; a parked call needs none: the parked set is its pointer)
-- ARGV[3] '1' when each row carries its task message to LPUSH onto KEYS[4] (a priority
--         campaign); '2' the same, but the broker is another Redis (LEDGER_REDIS_URL): the
--         script touches none of its keys, and the caller LPUSHes the message of every row
--         whose code is 1 or 2 after the script (a crash in between leaves the call `queued`
--         with its deadline, which republishes it); '' to park every row: the sweepers then
--         feed the campaign's calls to the queue at its account's pace
-- ARGV[4..] per row, three values: request id, task message ('' when parking), the call's
--         data as a JSON array [field, value, ...]
-- Returns one code per row: 1 when the record was created (and pushed or parked), 2 when it
-- exists and is still `queued` (pushed again, or parked again if it is not: a copy is
-- harmless, the claim is atomic), 0 when it exists in any other state, 3 when the campaign
-- was cancelled (nothing written). An existing record is never changed. Record and its
-- pointer are written in one step: a record never exists without a way back to a worker.
local n = #KEYS - 9
local codes = {}
if redis.call('HGET', KEYS[6], 'cancelled') == '1' then
  for i = 1, n do codes[i] = 3 end
  return codes
end
local campaign = ARGV[1]
local overdue = tonumber(ARGV[2])
local push = ARGV[3] == '1' or ARGV[3] == '2'
local push_here = ARGV[3] == '1'
local now = now_ms()
-- First every read and every decode, then the writes: a command that raises (a key of the
-- wrong type, a refused key) aborts the script before it wrote anything, so no row is left
-- written without its counters, calls-list entry and campaign (a re-run would not count it).
local plan = {}  -- per row: 0 leave alone, 1 create, 2 exists and still queued
local since = {}  -- per row 2: its created_at (its score in the parked set)
local data = {}  -- per row 1: its fields, decoded
local fresh = {}  -- the call keys this batch creates (a row repeated in it is a 2)
for i = 1, n do
  local call = KEYS[9 + i]
  local base = 4 + (i - 1) * 3
  local state = 'queued'
  if not fresh[call] then state = redis.call('HGET', call, 'state') end
  if state and state ~= 'queued' then
    plan[i] = 0
  elseif state then
    plan[i] = 2
    since[i] = now
    if not fresh[call] then since[i] = tonumber(redis.call('HGET', call, 'created_at')) or now end
  else
    plan[i] = 1
    data[i] = cjson.decode(ARGV[base + 2])
    fresh[call] = true
  end
end
local created_ids = {}
local parked_any = false
for i = 1, n do
  local call = KEYS[9 + i]
  local base = 4 + (i - 1) * 3
  local rid = ARGV[base]
  codes[i] = plan[i]
  if plan[i] ~= 0 then
    if push_here then
      redis.call('LPUSH', KEYS[4], ARGV[base + 1])
    elseif not push then
      redis.call('ZADD', KEYS[7], 'NX', since[i] or now, rid)
      parked_any = true
    end
  end
  if plan[i] == 1 then
    local fields = data[i]
    redis.call('HSET', call, 'request_id', rid, 'campaign', campaign, 'state', 'queued',
      'attempts', 0, 'sent', 0, 'created_at', now, 'updated_at', now)
    if #fields > 0 then redis.call('HSET', call, unpack(fields)) end
    if push then
      redis.call('ZADD', KEYS[5], now + overdue, rid)
    else
      redis.call('HSET', call, 'parked', 'new')
    end
    created_ids[#created_ids + 1] = rid
  end
end
if parked_any then
  local cur = redis.call('ZSCORE', KEYS[8], campaign)
  if not cur or tonumber(cur) > now then redis.call('ZADD', KEYS[8], now, campaign) end
end
local created = #created_ids
if created > 0 then
  redis.call('HINCRBY', KEYS[1], 'queued', created)
  redis.call('HINCRBY', KEYS[1], 'total', created)
  for s = 1, created, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(created_ids, s, math.min(s + 999, created)))
  end
  if redis.call('SADD', KEYS[3], campaign) == 1 then redis.call('ZADD', KEYS[9], 0, campaign) end
end
return codes
