# oha's JSON (`--output-format json`, $o) and the loadgen wrapper's accounting ($w) as one run
# in loadgen's report shape, for loadtests/run.sh (`jq -n --slurpfile o ... --slurpfile w ...`).
# Latencies are oha's, coordinated-omission corrected (`-q` with `--latency-correction`);
# per-request figures are over the responses oha got (any status).
def ms: if . == null then null else (. * 1e6 | round / 1000) end;
def per($n): if $n > 0 then (. / $n * 100 | round / 100) else 0 end;
($o[0]) as $o | ($w[0]) as $w |
($o.statusCodeDistribution // {}) as $codes |
([$codes | to_entries[] | .value] | add // 0) as $responses |
([$codes | to_entries[] | select(.key | startswith("2")) | .value] | add // 0) as $ok |
{
  tool: "oha",
  url: $url,
  method: "POST",
  rate: $rate,
  connections: $connections,
  scheduled: ($responses + ([$o.errorDistribution // {} | to_entries[] | .value] | add // 0)),
  ok: $ok,
  errors: (($codes | with_entries(select(.key | startswith("2") | not) | .key = "status_\(.key)"))
           + ($o.errorDistribution // {})),
  achieved_rate: ($o.summary.requestsPerSec * 10 | round / 10),
  latency_ms: {
    count: $ok,
    min: ($o.summary.fastest | ms),
    mean: ($o.summary.average | ms),
    p50: ($o.latencyPercentiles.p50 | ms),
    p90: ($o.latencyPercentiles.p90 | ms),
    p99: ($o.latencyPercentiles.p99 | ms),
    p99_9: ($o.latencyPercentiles["p99.9"] | ms),
    max: ($o.summary.slowest | ms)
  },
  elapsed_s: $w.elapsed_s
}
+ (if $w.gateway then {gateway: ($w.gateway + {cpu_us_per_request: ($w.gateway.cpu_us | per($responses))})} else {} end)
+ (if $w.redis then {redis: ($w.redis + {
      commands_per_request: ($w.redis.calls | per($responses)),
      usec_per_request: ($w.redis.usec | per($responses)),
      cpu_us_per_request: ($w.redis.cpu_us | per($responses)),
      calls_per_request: ($w.redis.commands | map_values(.calls | per($responses)))})} else {} end)
