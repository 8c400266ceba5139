-- settle_v4: a batch of settlements' work on the keys of ONE hash tag, in one call: release
-- the leases of a scope (giving back unused tokens), settle the money of the account of that
-- tag once per request id, and add to that tag's daily rollups. (Prepended: ledger_lib_v3.)
-- The batcher (src/store/redis/settlement.rs) splits a batch by tag: each account's tag first
-- (leases of the caller's own scope, money, the account rollup), then each shared tag (the
-- subnet's or public tier's leases, the subnet rollup) and {stats}.
-- KEYS: with a scope, [1] its bucket hash ({x}:q), [2] its lease set ({x}:q:conc);
--       without, [1] any key of the tag (it only routes the call).
-- ARGV[1] key prefix   ARGV[2] account id ('' = no money here)   ARGV[3] done-mark ttl s
-- ARGV[4] retention s (0 = keep)   ARGV[5] expired-hold policy
-- ARGV[6..9] with a scope: rpm, tpm, tpd capacity, max concurrent
-- ARGV[10] releases R   ARGV[11] money entries M   ARGV[12] rollup days D
-- ARGV[13] rollup tag ('' = none, else e.g. '{s:7}' or '{stats}')   ARGV[14] caller entries C
-- then R × (request id, tokens back (estimate - actual; negative takes more), 1 = give the
--   request back too)
-- then M × (request id, cost rao, input tokens, output tokens, day YYYY-MM-DD, kind, event
--   json); kind '0' = the account's, with a hold to release; '2' = the account's, nothing held
--   (postpaid: no hold lookup); '1' = anonymous (zero-priced, no account: the done-mark and
--   the event only)
-- then D × (day, requests, input tokens, output tokens, rao)
-- then C × (day, caller) for {stats}:callers:<day>
-- A release acts only if it removes the request's lease; money only if the request's done-mark
-- was not set yet, so a retried settlement (a journal replay, or one after the hold expired)
-- changes nothing. Token give-backs of one batch are summed, then applied once.
-- Returns flat name/value pairs, decoded by src/store/redis/settlement.rs:
--   removed   per release, 1 if it removed the lease
--   recorded  per money entry, 'now' (debited and recorded now) or 'before' (settled before)
--   swept     expired holds turned into events: flat (netuid, day, cost, input, output)
local now = now_ms()
local prefix, account = ARGV[1], ARGV[2]
local done_ttl, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local R, M, D, C = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[14])
local rtag = ARGV[13]
local i = 15

local removed = {}
if R > 0 then
  local back = { 0, 0, 0 }
  for r = 1, R do
    local id, tokens, whole = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    i = i + 3
    local n = redis.call('ZREM', KEYS[2], id)
    removed[r] = n
    if n == 1 then
      back[1], back[2], back[3] = back[1] + whole, back[2] + tokens, back[3] + tokens
    end
  end
  if back[1] ~= 0 or back[2] ~= 0 then
    local caps = { tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]) }
    local lv, x = levels(KEYS[1], caps, now)
    for b = 1, 3 do lv[b] = math.min(caps[b], lv[b] + back[b]) end
    store_levels(KEYS[1], KEYS[2], lv, now, x)
  end
end

local recorded, swept = {}, {}
if M > 0 or account ~= '' then
  local acct = tag(prefix, key.account, account)
  local b = books(false)
  local anon_b = books(true)
  local any_anon = false
  if M > 0 and ARGV[i + 5] ~= '1' then
    swept = sweep(prefix, account, now, ARGV[5], done_ttl, b)
  end
  for m = 1, M do
    local id, cost, inp, outp, day, kind, json =
      ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    i = i + 7
    if redis.call('SET', acct .. key.done .. id, 's', 'NX', 'EX', done_ttl) then
      recorded[m] = 'now'
      if kind == '1' then
        any_anon = true
        book(anon_b, day, json, cost, inp, outp)
      else
        if kind == '0' then
          local hold = redis.call('HGET', acct .. key.holds, id)
          if hold then
            redis.call('HDEL', acct .. key.holds, id)
            redis.call('ZREM', acct .. key.holdexp, id)
            big_add(b.released, string.match(hold, '^(%d+)'))
          end
        end
        book(b, day, json, cost, inp, outp)
      end
    else
      recorded[m] = 'before'
    end
  end
  write_books(prefix, account, b, retention)
  if any_anon then write_books(prefix, account, anon_b, retention) end
end

if D > 0 then
  for d = 1, D do
    bump(prefix .. rtag .. key.rollup .. ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]),
      tonumber(ARGV[i + 3]), ARGV[i + 4], retention)
    i = i + 5
  end
end
for c = 1, C do
  local k = prefix .. '{stats}' .. key.callers .. ARGV[i]
  if redis.call('SADD', k, ARGV[i + 1]) == 1 and retention > 0 then
    redis.call('EXPIRE', k, retention, 'NX')
  end
  i = i + 2
end

return { 'removed', removed, 'recorded', recorded, 'swept', swept }
