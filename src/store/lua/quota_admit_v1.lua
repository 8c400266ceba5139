-- quota_admit_v1: checks and consumes every limit of a request at once, all or nothing.
-- KEYS: 4 per scope, in order: requests/minute bucket, tokens/minute bucket,
--       tokens/day bucket, concurrency lease set (one scope = one hash tag)
-- ARGV[1] request id          ARGV[2] tokens to consume (estimate)
-- ARGV[3] lease ttl ms        ARGV[4] 'admit' or 'peek' (peek consumes nothing)
-- ARGV[5..] per scope: rpm capacity, tpm capacity, tpd capacity, max concurrent
-- Buckets are token buckets refilled continuously over their period (capacity per minute or
-- per day), stored as a hash {l = level, t = ms}; time is the Redis server's own (TIME), so
-- replicas with skewed clocks agree. Returns
-- { refused scope (0 = admitted, else 1-based), refused limit (1 rpm, 2 tpm, 3 tpd, 4 conc),
--   retry after ms, then per scope: rpm remaining, rpm reset ms, tpm remaining, tpm reset ms,
--   tpd remaining, tpd reset ms, in flight }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, cost, ttl, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local n = #KEYS / 4
local periods = { 60000, 60000, 86400000 }
local levels, caps, inflight = {}, {}, {}
local refused, why, retry = 0, 0, 0

for s = 0, n - 1 do
  local costs = { 1, cost, cost }
  for b = 1, 3 do
    local cap = tonumber(ARGV[4 + s * 4 + b])
    local lvl = cap
    local v = redis.call('HMGET', KEYS[s * 4 + b], 'l', 't')
    if v[1] then
      lvl = math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / periods[b])
    end
    if mode == 'admit' and refused == 0 and lvl < costs[b] then
      refused, why = s + 1, b
      if costs[b] > cap then
        retry = periods[b]
      else
        retry = math.ceil((costs[b] - lvl) * periods[b] / cap)
      end
    end
    levels[s * 3 + b], caps[s * 3 + b] = lvl, cap
  end
  local conc = KEYS[s * 4 + 4]
  redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
  inflight[s + 1] = redis.call('ZCARD', conc)
  local maxc = tonumber(ARGV[8 + s * 4])
  if mode == 'admit' and refused == 0 and inflight[s + 1] >= maxc then
    refused, why = s + 1, 4
    -- The earliest lease expiry bounds when a slot returns; a release usually comes sooner.
    local first = redis.call('ZRANGE', conc, 0, 0, 'WITHSCORES')
    retry = math.max(1, math.min(1000, tonumber(first[2]) - now))
  end
end

if mode == 'admit' and refused == 0 then
  for s = 0, n - 1 do
    local costs = { 1, cost, cost }
    for b = 1, 3 do
      local i = s * 3 + b
      local lvl = levels[i] - costs[b]
      levels[i] = lvl
      redis.call('HSET', KEYS[s * 4 + b], 'l', tostring(lvl), 't', now)
      -- Once full again the bucket is indistinguishable from an absent one.
      redis.call('PEXPIRE', KEYS[s * 4 + b], math.ceil((caps[i] - lvl) * periods[b] / caps[i]) + 1000)
    end
    local conc = KEYS[s * 4 + 4]
    redis.call('ZADD', conc, now + ttl, id)
    redis.call('PEXPIRE', conc, ttl + 1000)
    inflight[s + 1] = inflight[s + 1] + 1
  end
end

local out = { refused, why, retry }
for s = 0, n - 1 do
  for b = 1, 3 do
    local i = s * 3 + b
    local lvl = levels[i]
    local rem = math.max(0, math.floor(lvl))
    local reset = math.max(0, math.ceil((caps[i] - lvl) * periods[b] / caps[i]))
    out[#out + 1] = rem
    out[#out + 1] = reset
  end
  out[#out + 1] = inflight[s + 1]
end
return out
