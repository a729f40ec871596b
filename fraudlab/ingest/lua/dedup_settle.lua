-- Record Kafka's verdict on claimed transaction ids: one atomic call per batch (fraudlab/ingest/dedup.py).
--
-- KEYS[i] = <prefix>:dedup:<transaction_id>; ARGV[1] "<owner>:<claim>" as the claim call gave it, ARGV[2] the dedup
-- window in ms, ARGV[2 + i] "1" when Kafka confirmed KEYS[i] (it becomes "D" for the window, whoever holds it: the
-- record is in the topic) or "0" when it was not published (that very claim is dropped so a retry publishes it; a
-- later claim, or another owner's takeover, is left alone).
-- Returns the number of keys.
local claimant, window = ARGV[1], ARGV[2]
for i, key in ipairs(KEYS) do
  if ARGV[i + 2] == "1" then
    redis.call("SET", key, "D", "PX", window)
  elseif redis.call("GET", key) == "P" .. claimant then
    redis.call("DEL", key)
  end
end
return #KEYS
