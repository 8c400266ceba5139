-- ledger_lib_v3: helpers shared by the v4 scripts (prepended to each).
-- Every script touches the keys of ONE hash tag (one Redis Cluster slot): the keys it is given
-- and the ones it builds below from the prefix and the same tag.
-- Money is handled as decimal strings and changed only with INCRBY/DECRBY/HINCRBY, so amounts
-- stay exact 64-bit integers; sums of many are added exactly by `big_add` (two doubles, each
-- far below 2^53), never as one Lua number.
-- v3 (over v2): one hash per scope for its three buckets; usage events in the account's own
-- monthly stream (no cross-slot month stream); rollups written once per batch, not per request.

-- The keys the scripts build from the prefix (ARGV) rather than receiving as KEYS: the one
-- place in Lua that spells them. They must match src/store/keys.rs, where the whole layout is
-- documented. `tag(prefix, key.account, id)` is `<prefix>{a:<id>}`, then `.. key.balance` etc.
local key = {
  account = '{a:', balance = ':bal', held = ':held', holds = ':holds', holdexp = ':holdexp',
  done = ':done:', debits = ':debits', rollup = ':use:', events = ':ev:', callers = ':callers:',
}
local function tag(prefix, kind, id) return prefix .. kind .. id .. '}' end

-- An exact sum of non-negative decimal strings: {high, low} with low < 10^9.
local function big() return { 0, 0 } end
local function big_add(b, s)
  local n = #s
  if n > 9 then
    b[1] = b[1] + tonumber(string.sub(s, 1, n - 9))
    b[2] = b[2] + tonumber(string.sub(s, n - 8))
  else
    b[2] = b[2] + tonumber(s)
  end
  if b[2] >= 1e9 then
    local carry = math.floor(b[2] / 1e9)
    b[1], b[2] = b[1] + carry, b[2] - carry * 1e9
  end
end
local function big_str(b)
  if b[1] == 0 then return string.format('%d', b[2]) end
  return string.format('%d%09d', b[1], b[2])
end
local function big_zero(b) return b[1] == 0 and b[2] == 0 end

-- Unix ms -> year, month, day, hour, minute, second, ms (UTC; proleptic Gregorian).
local function civil(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m, d, math.floor(sod / 3600), math.floor((sod % 3600) / 60), sod % 60, ms % 1000
end

local function rfc3339(ms)
  local y, m, d, hh, mm, ss, frac = civil(ms)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, hh, mm, ss, frac)
end

local function day_of(ms)
  local y, m, d = civil(ms)
  return string.format('%04d-%02d-%02d', y, m, d)
end

-- One account's usage, gathered over a batch and written once: `debit` the rao charged,
-- `released` the rao of holds released, per month the events and the month's debit, per day
-- the rollup. `anon` books (a zero-priced caller without an account) write only the events.
local function books(anon)
  return { debit = big(), released = big(), months = {}, days = {}, anon = anon }
end

local function book(b, day, json, cost, inp, outp)
  local month = string.sub(day, 1, 7)
  local m = b.months[month]
  if not m then
    m = { events = {}, debit = big() }
    b.months[month] = m
  end
  m.events[#m.events + 1] = json
  big_add(m.debit, cost)
  big_add(b.debit, cost)
  local d = b.days[day]
  if not d then
    d = { requests = 0, inp = 0, outp = 0, rao = big() }
    b.days[day] = d
  end
  d.requests = d.requests + 1
  d.inp = d.inp + tonumber(inp)
  d.outp = d.outp + tonumber(outp)
  big_add(d.rao, cost)
end

-- Adds one day's totals to the rollup hash `k`; returns true when this created it (so its
-- expiry, and that of keys living as long, is set once per key and day, not per request).
local function bump(k, requests, inp, outp, rao, retention)
  local first = redis.call('HINCRBY', k, 'requests', requests) == requests
  if inp ~= 0 then redis.call('HINCRBY', k, 'input_tokens', inp) end
  if outp ~= 0 then redis.call('HINCRBY', k, 'output_tokens', outp) end
  if rao ~= '0' then redis.call('HINCRBY', k, 'rao', rao) end
  if first and retention > 0 then redis.call('EXPIRE', k, retention) end
  return first
end

-- Writes an account's books: balance, debits, the month's events (one XADD per month with
-- every event of the batch: fields `a` account, then `e` per event), the day's rollups.
local function write_books(prefix, account, b, retention)
  local acct = tag(prefix, key.account, account)
  if not big_zero(b.released) then
    redis.call('DECRBY', acct .. key.held, big_str(b.released))
  end
  if not b.anon and not big_zero(b.debit) then
    local d = big_str(b.debit)
    redis.call('DECRBY', acct .. key.balance, d)
    redis.call('HINCRBY', acct .. key.debits, 'total', d)
  end
  for month, m in pairs(b.months) do
    local stream = acct .. key.events .. month
    local args = { 'XADD', stream, '*', 'a', account }
    for _, e in ipairs(m.events) do
      args[#args + 1] = 'e'
      args[#args + 1] = e
    end
    redis.call(unpack(args))
    if b.anon then
      if retention > 0 then redis.call('EXPIRE', stream, retention, 'NX') end
    elseif not big_zero(m.debit) then
      redis.call('HINCRBY', acct .. key.debits, month, big_str(m.debit))
    end
  end
  if b.anon then return end
  for day, d in pairs(b.days) do
    local first = bump(acct .. key.rollup .. day, d.requests, d.inp, d.outp, big_str(d.rao),
      retention)
    -- The month's stream lives `retention` past the first event of its last day.
    if first and retention > 0 then
      redis.call('EXPIRE', acct .. key.events .. string.sub(day, 1, 7), retention)
    end
  end
end

-- Turns the account's expired holds (at most 16 per call) into `unsettled` usage events,
-- charged per `policy` ('charge' = the held amount, 'release' = nothing), into `b`. A hold
-- expires only when its replica stopped renewing it (it died or lost Redis for longer than the
-- hold TTL); a settlement that arrives later finds the request done and changes nothing.
-- Returns the swept holds as flat (netuid, day, cost, input, output) for the caller's
-- subnet and public rollups.
local function sweep(prefix, account, now, policy, done_ttl, b)
  local acct = tag(prefix, key.account, account)
  local swept = {}
  local expired = redis.call('ZRANGEBYSCORE', acct .. key.holdexp, '-inf', now, 'LIMIT', 0, 16)
  for _, rid in ipairs(expired) do
    local v = redis.call('HGET', acct .. key.holds, rid)
    redis.call('ZREM', acct .. key.holdexp, rid)
    if v then
      redis.call('HDEL', acct .. key.holds, rid)
      local amount, inp, outp, netuid, tmpl = string.match(v, '^(%d+) (%d+) (%d+) (%S+) (.*)$')
      big_add(b.released, amount)
      if redis.call('SET', acct .. key.done .. rid, 'x', 'NX', 'EX', done_ttl) then
        local cost = amount
        if policy ~= 'charge' then cost = '0' end
        local json = string.gsub(tmpl, '"__COST__"', cost, 1)
        json = string.gsub(json, '__FINISHED__', rfc3339(now), 1)
        local day = day_of(now)
        book(b, day, json, cost, inp, outp)
        if netuid == '-' then netuid = '' end
        for _, x in ipairs({ netuid, day, cost, inp, outp }) do swept[#swept + 1] = x end
      end
    end
  end
  return swept
end

-- A scope's three token buckets live in one hash: `l1`/`t1` requests per minute, `l2`/`t2`
-- tokens per minute, `l3`/`t3` tokens per day (level, ms of the last write), and `x`, when the
-- expiries of the hash and its lease set were last pushed out. They are pushed to two days
-- once half a day has passed since, so both outlive a full refill of the day bucket after their
-- last write (after which an absent bucket is the same as a full one) at one PEXPIRE per key and
-- half day instead of one per request.
local periods = { 60000, 60000, 86400000 }
local KEEP_MS, REFRESH_MS = 2 * 86400000, 43200000

-- The three levels of `hash` at `now` for capacities `caps`, and the `x` field.
local function levels(hash, caps, now)
  local v = redis.call('HMGET', hash, 'l1', 't1', 'l2', 't2', 'l3', 't3', 'x')
  if not v[7] then
    -- No hash yet: carry over the levels of the v3 layout (one hash per bucket, `l`/`t`) so
    -- an upgrade does not refill every bucket at once; those keys then simply expire.
    for b, s in ipairs({ ':rpm', ':tpm', ':tpd' }) do
      local o = redis.call('HMGET', hash .. s, 'l', 't')
      if o[1] then v[b * 2 - 1], v[b * 2] = o[1], o[2] end
    end
  end
  local out = {}
  for b = 1, 3 do
    local cap = caps[b]
    local l, t = v[b * 2 - 1], v[b * 2]
    if l then
      out[b] = math.min(cap, tonumber(l) + (now - tonumber(t)) * cap / periods[b])
    else
      out[b] = cap
    end
  end
  return out, v[7]
end

-- Stores `lv` in `hash`, pushing the expiries out when due (see above).
local function store_levels(hash, conc, lv, now, x)
  redis.call('HSET', hash, 'l1', tostring(lv[1]), 't1', now, 'l2', tostring(lv[2]), 't2', now,
    'l3', tostring(lv[3]), 't3', now)
  if not x or now - tonumber(x) >= REFRESH_MS then
    redis.call('HSET', hash, 'x', now)
    redis.call('PEXPIRE', hash, KEEP_MS)
    redis.call('PEXPIRE', conc, KEEP_MS)
    -- Leases of replicas that died are dropped here; live counts ignore them meanwhile.
    redis.call('ZREMRANGEBYSCORE', conc, '-inf', now)
  end
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
