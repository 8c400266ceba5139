-- credit_v2: credits an account once per reference; never past the largest balance.
-- KEYS[1] balance ({a:<id>}:bal, integer rao)   KEYS[2] the credit's record ({a:<id>}:credit:<ref>)
-- KEYS[3] the account's credit log (list, one JSON line per credit, for the ledger)
-- ARGV[1] amount in rao (decimal)   ARGV[2] unix ms   ARGV[3] the log line
-- Returns { code, balance (decimal string), amount (decimal string) }, decoded by
-- `Store::credit` in src/store/credit.rs:
--    1  credited now; the balance after it
--    0  the same credit seen before; the balance right after it, its amount
--   -1  reference reused with another amount; the balance after the first credit, its amount
--   -2  refused: the balance would pass 2^63-1 rao; nothing recorded; the current balance
-- v2 (over v1): code -2 instead of a script error (which surfaced as a 500).
local prev = redis.call('HMGET', KEYS[2], 'amount', 'balance')
if prev[1] then
  if prev[1] == ARGV[1] then
    return { 0, prev[2], prev[1] }
  end
  return { -1, prev[2], prev[1] }
end
-- INCRBY checks the 64-bit range exactly; a Lua number would round above 2^53 rao.
local bal = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(bal) == 'table' and bal.err then
  if string.find(bal.err, 'overflow', 1, true) then
    return { -2, redis.call('GET', KEYS[1]) or '0', ARGV[1] }
  end
  return bal
end
bal = tostring(redis.call('GET', KEYS[1]))
redis.call('HSET', KEYS[2], 'amount', ARGV[1], 'balance', bal, 'at', ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
return { 1, bal, ARGV[1] }
