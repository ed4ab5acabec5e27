-- master_epoch.lua: run by the worker on each new connection, to see a new Redis master.
-- KEYS[1] the run_id of the master last seen (a string, replicated like every other key)
-- KEYS[2] the hold (a string with TTL): while it lives, no limiter grants a permit
-- ARGV[1] this server's run_id (INFO server)   ARGV[2] how long to hold, in ms
-- A replica promoted by a failover holds its old master's run_id in KEYS[1], but may lack the
-- old master's last writes (replication is asynchronous), among them the limiter's schedule.
-- When KEYS[1] names another server, every account's limiter is held shut for ARGV[2] ms;
-- an empty KEYS[1] (a new or emptied Redis: there was nothing to lose) holds nothing.
-- Returns the ms the hold still lives (0 when there is none).
local seen = redis.call('GET', KEYS[1])
if seen ~= ARGV[1] then
  if seen then
    redis.call('SET', KEYS[2], seen, 'PX', tonumber(ARGV[2]))
  end
  redis.call('SET', KEYS[1], ARGV[1])
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then return 0 end
return left
