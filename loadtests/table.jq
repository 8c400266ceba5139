# The markdown table of loadtests/run.sh, from results.json / matrix.json (`jq -r -f`).
# Latencies in ms; "added" is the gateway's (or LiteLLM's) run minus the direct run at the
# same rate and percentile; CPU and Redis figures are per complete response.
def f3: if . == null then "–" else (. * 1000 | round / 1000 | tostring) end;
def f1: if . == null then "–" else (. * 10 | round / 10 | tostring) end;
def errs: if (. // {}) == {} then "0" else (to_entries | map("\(.key) \(.value)") | join(", ")) end;
def mib: if . == null then "–" else (. / 1024 | f1) end;
"Latency from due time to last byte; \(.cores) cores shared by upstream (\(.upstream)), gateway, store and load generator; commit \(.commit), \(.date); \(.duration) per run",
"",
"| scenario | store | rate /s | tool | achieved /s | errors | p50 | p90 | p99 | p99.9 | added p50 | added p90 | added p99 | added p99.9 | TTFT p50 / p99 | CPU µs/req | RSS MiB end / max | Redis cmds/req | Redis CPU µs/req |",
"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
(.rows[] | select(.kind == "skipped") | "| (all) | \(.store) | – | – | skipped: the gateway did not start with this store (\(.phase) answers) | | | | | | | | | | | | | | |"),
(.rows[] | select(.kind != "skipped") | .run as $r0
  # A run without a single success has no latencies (loadgen reports zeros then).
  | (if ($r0.ok // 0) == 0 then $r0 + {latency_ms: {}, ttft_ms: null}
       | .gateway.cpu_us_per_request = null | .redis.commands_per_request = null
       | .redis.cpu_us_per_request = null else $r0 end) as $r |
  "| \(.scenario) | \(.store) | \(.rate) | \($r.tool) | \($r.achieved_rate | f1) | \($r.errors | errs) | "
  + "\($r.latency_ms.p50 | f3) | \($r.latency_ms.p90 | f3) | \($r.latency_ms.p99 | f3) | \($r.latency_ms.p99_9 | f3) | "
  + "\(.added_ms.p50 | f3) | \(.added_ms.p90 | f3) | \(.added_ms.p99 | f3) | \(.added_ms.p99_9 | f3) | "
  + (if $r.ttft_ms then "\($r.ttft_ms.p50 | f3) / \($r.ttft_ms.p99 | f3)" else "–" end) + " | "
  + "\($r.gateway.cpu_us_per_request | f1) | \($r.gateway.rss_kib_end | mib) / \($r.gateway.rss_kib_max | mib) | "
  + "\($r.redis.commands_per_request | f1) | \($r.redis.cpu_us_per_request | f1) |"),
"",
"Saturation rows: offered far above capacity (open loop); the achieved rate is the figure, their latencies are queueing.",
(if any(.rows[]; .kind != "skipped" and .run.tool == "loadgen" and .kind == "direct" and .run.send_lag_ms.p99 > 1)
 then "warning: loadgen sent direct requests > 1 ms late at p99: the machine was busy; rerun before trusting the tails"
 else empty end)
