-- credit_v3: credits an account once per reference; never past the largest balance.
-- KEYS[1] balance ({a:<id>}:bal, integer rao)   KEYS[2] the credit's record ({a:<id>}:credit:<ref>)
-- KEYS[3] the account's credit log (list, one JSON line per credit, for the ledger)
-- ARGV[1] amount in rao (decimal)   ARGV[2] unix ms   ARGV[3] the log line
-- Returns flat name/value pairs, decoded by src/store/redis/credit.rs:
--   outcome      'credited' now; 'repeated' (the same credit seen before); 'conflict' (the
--                reference reused with another amount); 'overflow' (refused: the balance would
--                pass 2^63-1 rao; nothing recorded)
--   balance_rao  decimal string: the balance after this credit (credited), right after the
--                first one (repeated, conflict), or now (overflow)
--   amount_rao   decimal string: this credit's amount, or the first one's (repeated, conflict)
-- v2 (over v1): code -2 instead of a script error (which surfaced as a 500).
-- v3 (over v2): named fields instead of three positional values.
local prev = redis.call('HMGET', KEYS[2], 'amount', 'balance')
if prev[1] then
  if prev[1] == ARGV[1] then
    return { 'outcome', 'repeated', 'balance_rao', prev[2], 'amount_rao', prev[1] }
  end
  return { 'outcome', 'conflict', 'balance_rao', prev[2], 'amount_rao', prev[1] }
end
-- INCRBY checks the 64-bit range exactly; a Lua number would round above 2^53 rao.
local bal = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(bal) == 'table' and bal.err then
  if string.find(bal.err, 'overflow', 1, true) then
    return { 'outcome', 'overflow', 'balance_rao', redis.call('GET', KEYS[1]) or '0',
      'amount_rao', ARGV[1] }
  end
  return bal
end
bal = tostring(redis.call('GET', KEYS[1]))
redis.call('HSET', KEYS[2], 'amount', ARGV[1], 'balance', bal, 'at', ARGV[2])
redis.call('RPUSH', KEYS[3], ARGV[3])
return { 'outcome', 'credited', 'balance_rao', bal, 'amount_rao', ARGV[1] }
