#!/usr/bin/env bash
# What one script call costs Redis itself, without the network: loadtests/lua-cost.sh [N]
#
# Starts a private redis-server (loopback, free port, no persistence), then runs each probe N
# times (default 20000) with redis-benchmark (8 clients, pipelined 16 deep, so the network
# cost per call is small) and prints `INFO commandstats` usec_per_call of EVALSHA for each:
# an empty script, the scripts' shared library alone, a few single primitives, and the real
# admission step (`admit_v4.lua` with `ledger_lib_v3.lua`, an account paying for itself, as
# the dev token of loadtests/bench.toml). The probes are cumulative where named `+ …`, so
# the differences are what each part costs. Run it on a quiet machine: commandstats count
# wall time, which other processes on the same cores inflate. Needs redis-server,
# redis-benchmark and redis-cli.
set -euo pipefail
N=${1:-20000}
HERE=$(cd "$(dirname "$0")" && pwd)
LIB=$HERE/../src/store/redis/ledger_lib_v3.lua
ADMIT=$HERE/../src/store/redis/admit_v4.lua
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" >"$DIR/log" 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null || true; wait $RPID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -p "$PORT" "$@"; }

# The admission's keys and arguments (admit_v4.lua's header): a scope with the dev plan's
# capacities far above the load, a postpaid account, a 30 s lease.
ARGS=(2 'b:{a:dev}:q' 'b:{a:dev}:q:conc' 'rsn_bench' 70 30000 admit 'b:' dev postpaid 131
  1000000000000 600000 charge 3024000 34560000 '131 6 64 - ' 100000000 100000000000
  100000000000000 100000)

probe() { # NAME SCRIPT-TEXT
  local sha
  sha=$(cli script load "$2")
  cli config resetstat >/dev/null
  redis-benchmark -p "$PORT" -n "$N" -c 8 -P 16 -q EVALSHA "$sha" "${ARGS[@]}" >/dev/null 2>&1
  printf '%-46s %6s us/call\n' "$1" \
    "$(cli info commandstats | tr -d '\r' | awk -F'usec_per_call=' '/^cmdstat_evalsha:/ {split($2, a, ","); print a[1]}')"
}

lib=$(cat "$LIB")
probe "empty script (return 1)" "return 1"
probe "the library's definitions alone" "$lib
return 1"
probe "+ TIME (now_ms)" "$lib
local now = now_ms() return 1"
probe "+ read the three buckets (HMGET, refill)" "$lib
local now = now_ms() local lv, x = levels(KEYS[1], {1e8, 1e11, 1e14}, now) return 1"
probe "+ write them back (HSET)" "$lib
local now = now_ms() local lv, x = levels(KEYS[1], {1e8, 1e11, 1e14}, now)
store_levels(KEYS[1], KEYS[2], lv, now, x) return 1"
probe "20 x tostring(a 13-digit number)" "local n = 1796282947348 for i = 1, 20 do local s = tostring(n + i) end return 1"
probe "20 x string.format('%d', the same)" "local n = 1796282947348 for i = 1, 20 do local s = string.format('%d', n + i) end return 1"
probe "20 x tonumber('1796282947348')" "local n = '1796282947348' for i = 1, 20 do local s = tonumber(n) end return 1"
probe "admission step (admit_v4.lua, as the gateway)" "$lib
$(cat "$ADMIT")"
echo "redis $(redis-server --version | cut -d' ' -f3), $N calls per probe, load $(cut -d' ' -f1 /proc/loadavg)"
