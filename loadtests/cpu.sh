#!/usr/bin/env bash
# Gateway CPU per request: loadtests/cpu.sh ROOT [mem|redis]
#
# Starts ROOT's release chutes-sim and affine-gateway (build them first:
# `cargo build --release -p affine-gateway -p chutes-sim -p loadgen`) on random 127.0.0.1
# ports, warms up for 4 s, then sends 20,000 whole `/v1/reason` requests with the dev bearer
# token at 2,000 req/s and prints the gateway process's CPU per request (user + system, from
# /proc/PID/stat over the measured window, by `loadgen --gateway-pid`). Give two checkouts
# (before/after) to compare them in one run; the load generator is this checkout's
# (`LOADGEN=...` to override), so both are measured the same way. With `redis` the gateway
# keeps its state in 127.0.0.1:6379 under its own prefix, deleted afterwards, and Redis
# commands and CPU per request are printed too (`INFO commandstats` / `INFO cpu` deltas: other
# clients of that server in the same seconds count too; run.sh --store redis uses a private
# server). Needs jq and curl.
set -euo pipefail
ROOT=$1; MODE=${2:-mem}
B=$ROOT/target/release
LOADGEN=${LOADGEN:-"$(cd "$(dirname "$0")/.." && pwd)/target/release/loadgen"}
SIMP=$((20000 + RANDOM % 10000)); GWP=$((30000 + RANDOM % 10000))
$B/chutes-sim --listen 127.0.0.1:$SIMP --record-requests 0 >/dev/null 2>&1 & SIM=$!
observe=()
if [ "$MODE" = redis ]; then
  export GATEWAY_REDIS_URL=redis://127.0.0.1:6379 GATEWAY_KEY_PREFIX="agw-cpu-$$:"
  observe=(--redis-url 127.0.0.1:6379)
fi
GATEWAY_LISTEN=127.0.0.1:$GWP GATEWAY_UPSTREAM_URL=http://127.0.0.1:$SIMP/v1 CHUTES_API_KEY=bench GATEWAY_WINNER=affine-champ/Affine-Reasoner-32B RUST_LOG=warn GATEWAY_JOURNAL_PATH=/tmp/cpu-journal-$$ \
  $B/affine-gateway serve --config $ROOT/loadtests/bench.toml > /tmp/cpu-gw-$$.out 2>/tmp/cpu-gw-$$.err & GW=$!
for i in $(seq 1 100); do curl -sf 127.0.0.1:$GWP/readyz >/dev/null && break; sleep 0.1; done
TOKEN=$(grep -o 'dev token: .*' /tmp/cpu-gw-$$.out | cut -d' ' -f3)
"$LOADGEN" --url http://127.0.0.1:$GWP/v1/reason --header "authorization: Bearer $TOKEN" --body '{"input":"2+2?","max_tokens":64}' \
  --rate 2000 --duration 10s --warmup 4s --connections 64 --json --gateway-pid $GW "${observe[@]}" > /tmp/cpu-lg-$$.json
jq -r --arg root "$ROOT" --arg mode "$MODE" '"\($root) \($mode): gateway CPU \(.gateway.cpu_us_per_request) us/request"
  + (if .redis then ", Redis CPU \(.redis.cpu_us_per_request) us/request, \(.redis.commands_per_request) commands/request" else "" end)
  + " over \(.scheduled) requests (ok=\(.ok)), RSS \(.gateway.rss_kib_end) KiB"' /tmp/cpu-lg-$$.json
kill $GW $SIM; wait 2>/dev/null || true
rm -f /tmp/cpu-gw-$$.out /tmp/cpu-gw-$$.err /tmp/cpu-lg-$$.json
if [ "$MODE" = redis ]; then redis-cli --scan --pattern "agw-cpu-$$:*" | xargs -r redis-cli del >/dev/null; fi
