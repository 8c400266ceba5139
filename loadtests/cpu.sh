#!/usr/bin/env bash
# Gateway CPU per request: loadtests/cpu.sh [mem|redis] ROOT[:VAR=value...] [ROOT[:VAR=value...] ...]
# (also the older form `loadtests/cpu.sh ROOT [mem|redis]`).
#
# Starts each ROOT's release chutes-sim and affine-gateway (build them first:
# `cargo build --release -p affine-gateway -p chutes-sim -p loadgen`) on random 127.0.0.1
# ports, warms up for 3 s, then sends whole `/v1/reason` requests with the dev bearer token at
# RATE req/s for DURATION seconds and prints the gateway process's CPU time (user + system,
# from /proc/PID/stat) divided by the requests answered. `:VAR=value` suffixes set environment
# variables for that ROOT's gateway only (`/tmp/base:GATEWAY_WORKER_THREADS=1`), so one build
# can be compared with itself under two settings. Give two or more ROOTs (before/after) to
# compare them in one run: they are measured alternately, ROUNDS times each, and each one's
# median is printed at the end. With `redis` the gateway keeps its state in 127.0.0.1:6379
# under its own prefix, deleted afterwards, and the Redis server's CPU per request is printed
# too (it must be the local server: its /proc entry is read). Needs jq and curl.
#
# Environment: RATE (default 2000), DURATION (seconds, default 10), ROUNDS (default 1).
set -euo pipefail
MODE=mem
ROOTS=()
for a in "$@"; do
  case $a in
    mem | redis) MODE=$a ;;
    *) ROOTS+=("$a") ;;
  esac
done
[ ${#ROOTS[@]} -gt 0 ] || { echo "usage: $0 [mem|redis] ROOT[:VAR=value...] ..." >&2; exit 2; }
RATE=${RATE:-2000}; DURATION=${DURATION:-10}; ROUNDS=${ROUNDS:-1}
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
# A port nothing listens on now (a random guess collided with other test runs).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RPID=
if [ "$MODE" = redis ]; then RPID=$(redis-cli info server | tr -d '\r' | awk -F: '$1=="process_id"{print $2}'); fi
RESULTS=/tmp/cpu-results-$$
: > $RESULTS
SIM=; GW=
cleanup() {
  [ -n "$GW" ] && kill $GW 2>/dev/null || true
  [ -n "$SIM" ] && kill $SIM 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$MODE" = redis ]; then redis-cli --scan --pattern "agw-cpu-$$-*" | xargs -r redis-cli del >/dev/null; fi
}
trap cleanup EXIT

# measure SPEC ROUND: one measurement of one ROOT (with its variables).
measure() {
  local spec=$1 round=$2
  local root=${spec%%:*} vars=()
  [ "$spec" != "$root" ] && IFS=: read -ra vars <<< "${spec#*:}"
  local B=$root/target/release
  local SIMP GWP
  SIMP=$(free_port); GWP=$(free_port)
  $B/chutes-sim --listen 127.0.0.1:$SIMP --record-requests 0 >/dev/null 2>&1 & SIM=$!
  local redis_env=()
  if [ "$MODE" = redis ]; then redis_env=(GATEWAY_REDIS_URL=redis://127.0.0.1:6379 GATEWAY_KEY_PREFIX="agw-cpu-$$-$round:"); fi
  env "${redis_env[@]}" GATEWAY_LISTEN=127.0.0.1:$GWP GATEWAY_UPSTREAM_URL=http://127.0.0.1:$SIMP/v1 CHUTES_API_KEY=bench \
    GATEWAY_WINNER=affine-champ/Affine-Reasoner-32B RUST_LOG=warn GATEWAY_JOURNAL_PATH=/tmp/cpu-journal-$$-$round "${vars[@]}" \
    $B/affine-gateway serve --config $root/loadtests/bench.toml > /tmp/cpu-gw-$$.out 2>/tmp/cpu-gw-$$.err & GW=$!
  for _ in $(seq 1 150); do curl -sf 127.0.0.1:$GWP/readyz >/dev/null && break; sleep 0.1; done
  local TOKEN
  TOKEN=$(grep -o 'dev token: .*' /tmp/cpu-gw-$$.out | cut -d' ' -f3)
  local lg=(--url http://127.0.0.1:$GWP/v1/reason --header "authorization: Bearer $TOKEN" --body '{"input":"2+2?","max_tokens":64}' --rate $RATE --connections 64)
  $B/loadgen "${lg[@]}" --duration 2s --warmup 1s >/dev/null 2>&1 || true
  local t0 t1 r0= r1=
  t0=$(ticks $GW); [ -n "$RPID" ] && r0=$(ticks $RPID)
  $B/loadgen "${lg[@]}" --duration ${DURATION}s --warmup 0s --json > /tmp/cpu-lg-$$.json 2>/dev/null || true
  t1=$(ticks $GW); [ -n "$RPID" ] && r1=$(ticks $RPID)
  local ok
  ok=$(jq '.ok // .summary.ok // empty' /tmp/cpu-lg-$$.json 2>/dev/null || true)
  [ -n "$ok" ] && [ "$ok" -gt 0 ] || ok=$((RATE * DURATION))
  local gw_us=$(( (t1 - t0) * 1000000 / hz / ok )) redis_us=
  local line="$spec $MODE: gateway CPU $gw_us us/request"
  if [ -n "$RPID" ]; then redis_us=$(( (r1 - r0) * 1000000 / hz / ok )); line+=", Redis CPU $redis_us us/request"; fi
  local p99
  p99=$(jq -r '.latency_ms.p99 // "?"' /tmp/cpu-lg-$$.json 2>/dev/null || echo "?")
  echo "$line over $ok requests at $RATE req/s, p99 $p99 ms (round $round, load $(cut -d' ' -f1 /proc/loadavg))"
  echo "$spec $gw_us ${redis_us:--}" >> $RESULTS
  kill $GW $SIM; wait $GW $SIM 2>/dev/null || true
  GW=; SIM=
}

for round in $(seq 1 $ROUNDS); do
  for spec in "${ROOTS[@]}"; do measure "$spec" $round; done
done
if [ ${#ROOTS[@]} -gt 1 ] || [ $ROUNDS -gt 1 ]; then
  echo "median over $ROUNDS round(s), $MODE, $RATE req/s:"
  for spec in "${ROOTS[@]}"; do
    gw=$(awk -v s="$spec" '$1==s{print $2}' $RESULTS | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    all=$(awk -v s="$spec" '$1==s{printf "%s ", $2}' $RESULTS)
    echo "  $spec: gateway $gw us/request (all: $all)"
  done
fi
rm -f $RESULTS
