-- Claim transaction ids for publishing: one atomic call per batch (fraudlab/ingest/dedup.py, and the Go gateway).
--
-- A key KEYS[i] = <prefix>:dedup:<transaction_id> holds "P<owner>:<claim>" while the owner publishes it (<claim>
-- names the claim call, so undoing one claim never drops another, and a call run twice claims what it claimed)
-- and "D" once Kafka confirmed it. An owner is alive while its lease key <prefix>:owner:<owner> exists (renewed
-- by a heartbeat).
-- ARGV[1] "<owner>:<claim>", ARGV[2] pending TTL in ms, ARGV[3] the lease key prefix ("<prefix>:owner:"),
-- ARGV[4] "claim" (take what is free) or "peek" (only look: how a waiter polls for the verdict).
-- Returns one code per key: 0 free (claimed: publish it; on peek: released), 1 published (acknowledge as a
-- duplicate), 2 pending on a live owner (wait for its verdict), 3 pending on a dead owner (claimed: publish it again).
local claimant, ttl, lease_prefix, claim = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == "claim"
local owner = string.match(claimant, "^[^:]*")
local codes = {}
for i, key in ipairs(KEYS) do
  local value = redis.call("GET", key)
  if not value then
    if claim then redis.call("SET", key, "P" .. claimant, "PX", ttl) end
    codes[i] = 0
  elseif value == "D" then
    codes[i] = 1
  elseif claim and value == "P" .. claimant then
    codes[i] = 0  -- this very call, run again (its client retried after a lost answer): still this call's claim
  else
    local holder = string.match(value, "^P([^:]*)")
    if holder == owner or redis.call("EXISTS", lease_prefix .. holder) == 1 then
      codes[i] = 2
    else
      if claim then redis.call("SET", key, "P" .. claimant, "PX", ttl) end
      codes[i] = 3
    end
  end
end
return codes
