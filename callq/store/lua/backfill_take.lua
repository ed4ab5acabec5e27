-- backfill_take.lua: take due calls of the call_status backfill, each for one look-up.
-- KEYS[1] awaiting-status zset   KEYS[2..] the call hash of each request id below, in order
-- ARGV[1] ms until a taken call is due again (the first wait; it doubles with the call's
--         age, up to ARGV[2])   ARGV[2] the longest wait, ms
-- ARGV[3] the terminal statuses, as ',completed,busy,...,'   ARGV[4..] request ids
-- A call still due whose record is `originated` with a sid, and no terminal call_status for
-- that sid (`callback_sid`), is taken: it stays in the set, due again later (if the look-up
-- finds nothing, it is simply looked at then), and is returned. A call settled otherwise (its
-- callback came, or it is redialling: the next attempt's finish adds it again) leaves the set.
-- A call not yet due (added again since it was listed) is left alone.
-- Returns {request id, sid, account, ...} for the calls taken.
local now = now_ms()
local out = {}
for i = 4, #ARGV do
  local rid = ARGV[i]
  local key = KEYS[i - 2]
  local score = redis.call('ZSCORE', KEYS[1], rid)
  if score and tonumber(score) <= now then
    local rec = redis.call('HMGET', key, 'state', 'sid', 'call_status', 'callback_sid',
      'account', 'originated_at')
    local done = rec[3] and rec[4] == rec[2]
      and string.find(ARGV[3], ',' .. rec[3] .. ',', 1, true)
    if rec[1] ~= 'originated' or not rec[2] or rec[2] == '' or done then
      redis.call('ZREM', KEYS[1], rid)
    else
      local age = now - (tonumber(rec[6]) or now)
      local wait = math.min(math.max(tonumber(ARGV[1]), math.floor(age / 2)), tonumber(ARGV[2]))
      redis.call('ZADD', KEYS[1], now + wait, rid)
      out[#out + 1] = rid
      out[#out + 1] = rec[2]
      out[#out + 1] = rec[5] or ''
    end
  end
end
return out
