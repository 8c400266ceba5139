#!/usr/bin/env bash
# Gateway CPU per request: loadtests/cpu.sh ROOT [mem|redis]
#
# Starts ROOT's release chutes-sim and affine-gateway (build them first:
# `cargo build --release -p affine-gateway -p chutes-sim -p loadgen`) on random 127.0.0.1
# ports, warms up for 4 s, then sends 20,000 whole `/v1/reason` requests with the dev bearer
# token at 2,000 req/s and prints the gateway process's CPU time (user + system, from
# /proc/PID/stat) divided by the requests. Give two checkouts (before/after) to compare them in
# one run. With `redis` the gateway keeps its state in 127.0.0.1:6379 under its own prefix,
# deleted afterwards, and the Redis server's CPU per request is printed too (it must be the
# local server: its /proc entry is read). Needs jq and curl.
set -euo pipefail
ROOT=$1; MODE=${2:-mem}
B=$ROOT/target/release
SIMP=$((20000 + RANDOM % 10000)); GWP=$((30000 + RANDOM % 10000))
$B/chutes-sim --listen 127.0.0.1:$SIMP --record-requests 0 >/dev/null 2>&1 & SIM=$!
extra=()
if [ "$MODE" = redis ]; then export GATEWAY_REDIS_URL=redis://127.0.0.1:6379 GATEWAY_KEY_PREFIX="agw-cpu-$$:"; fi
GATEWAY_LISTEN=127.0.0.1:$GWP GATEWAY_UPSTREAM_URL=http://127.0.0.1:$SIMP/v1 CHUTES_API_KEY=bench GATEWAY_WINNER=affine-champ/Affine-Reasoner-32B RUST_LOG=warn GATEWAY_JOURNAL_PATH=/tmp/cpu-journal-$$ \
  $B/affine-gateway serve --config $ROOT/loadtests/bench.toml > /tmp/cpu-gw-$$.out 2>/tmp/cpu-gw-$$.err & GW=$!
for i in $(seq 1 100); do curl -sf 127.0.0.1:$GWP/readyz >/dev/null && break; sleep 0.1; done
TOKEN=$(grep -o 'dev token: .*' /tmp/cpu-gw-$$.out | cut -d' ' -f3)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
RPID=
if [ "$MODE" = redis ]; then RPID=$(redis-cli info server | tr -d '\r' | awk -F: '$1=="process_id"{print $2}'); fi
$B/loadgen --url http://127.0.0.1:$GWP/v1/reason --header "authorization: Bearer $TOKEN" --body '{"input":"2+2?","max_tokens":64}' --rate 2000 --duration 3s --warmup 1s --connections 64 >/dev/null 2>&1
t0=$(ticks $GW); r0=${RPID:+$(ticks $RPID)}
$B/loadgen --url http://127.0.0.1:$GWP/v1/reason --header "authorization: Bearer $TOKEN" --body '{"input":"2+2?","max_tokens":64}' --rate 2000 --duration 10s --warmup 0s --connections 64 --json > /tmp/cpu-lg-$$.json 2>/dev/null
t1=$(ticks $GW); r1=${RPID:+$(ticks $RPID)}
ok=$(jq '.ok // .summary.ok // empty' /tmp/cpu-lg-$$.json 2>/dev/null || true)
hz=$(getconf CLK_TCK)
redis_cpu=
if [ -n "$RPID" ]; then redis_cpu=", Redis CPU $(( (r1-r0) * 1000000 / hz / 20000 )) us/request"; fi
echo "$ROOT $MODE: gateway CPU $(( (t1-t0) * 1000000 / hz / 20000 )) us/request$redis_cpu over 20000 requests (ok=$ok)"
kill $GW $SIM; wait 2>/dev/null || true
if [ "$MODE" = redis ]; then redis-cli --scan --pattern "agw-cpu-$$:*" | xargs -r redis-cli del >/dev/null; fi
