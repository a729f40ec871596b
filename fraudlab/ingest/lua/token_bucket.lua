-- Spend tokens of per-user token buckets shared by every worker: one atomic call per batch
-- (fraudlab/ingest/ratelimit.py, and the Go gateway).
--
-- Each bucket KEYS[i] = <prefix>:bucket:<user_id> is one number: the Redis server time (microseconds) at which it is
-- full again (the generic cell rate algorithm, which admits exactly what a token bucket admits). Server time, so
-- the workers' clocks do not matter. It expires when the bucket is full again, so Redis holds only active users.
-- ARGV[1] rate (tokens/s), ARGV[2] burst (bucket depth), ARGV[2 + i] tokens wanted from KEYS[i].
-- Returns one count per key: the tokens granted (0..wanted); the caller admits that many of the user's records.
local now_parts = redis.call("TIME")
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = 1000000 / tonumber(ARGV[1])
-- One microsecond of slack, as the in-memory buckets have: the stored fill time is rounded to a microsecond.
local allowance = (tonumber(ARGV[2]) - 1) * interval + 1
local granted = {}
for i, key in ipairs(KEYS) do
  local full_at = tonumber(redis.call("GET", key) or now)
  if full_at < now then full_at = now end
  local room = math.floor((allowance - (full_at - now)) / interval) + 1
  local count = math.max(0, math.min(tonumber(ARGV[i + 2]), room))
  if count > 0 then
    full_at = full_at + count * interval
    redis.call("SET", key, string.format("%.0f", full_at), "PX", math.ceil((full_at - now) / 1000) + 1)
  end
  granted[i] = count
end
return granted
