#!/usr/bin/env bash
# Latency budget check: what the gateway adds on top of its upstream, at a constant rate.
#
#   loadtests/run.sh [--rate N] [--duration 15s] [--warmup 2s] [--connections 64]
#                    [--redis] [--chain] [--no-build]
#
# Starts chutes-sim and the gateway in front of it on free 127.0.0.1 ports, then runs the
# open-loop load generator four times at the same rate: the simulator directly and the gateway,
# each whole and streamed. Prints, per percentile, direct / gateway / overhead (gateway minus
# direct) and writes every number to target/loadtest/results.json. Everything it starts is
# stopped on exit, Ctrl-C included. See loadtests/README.md for how to read the table.
# With --chain, chain-sim runs too (a block a second): the gateway syncs netuid 1's metagraph
# and polls for deposits while the load runs, a transfer to the deposit address is sent every
# second from an unlinked coldkey, and the deposit counters are printed at the end.
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
USE_REDIS=0
USE_CHAIN=0
BUILD=1
MODEL=affine-champ/Affine-Reasoner-32B

usage() {
    sed -n '4,5p' "$0" | sed 's/^# *//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --redis) USE_REDIS=1; shift ;;
        --chain) USE_CHAIN=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
done

command -v jq >/dev/null || { echo "run.sh: jq is required for the table" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-"$ROOT/target/release"}
OUT="$ROOT/target/loadtest"
mkdir -p "$OUT"
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/loadtest.XXXXXX")
KEY_PREFIX="agw-bench-$$:"

SIM_PID=""
GW_PID=""
LOADGEN_PID=""
CHAIN_PID=""
TRANSFERS_PID=""
# The deposit address of --chain runs (//Alice's SS58) and the sender (//Bob's).
DEPOSIT_ADDRESS=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY
SENDER=5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Only the processes this script started, by pid.
    for pid in "$LOADGEN_PID" "$TRANSFERS_PID" "$GW_PID" "$SIM_PID" "$CHAIN_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ "$USE_REDIS" = 1 ] && command -v redis-cli >/dev/null; then
        # Only this run's keys; never a flush.
        redis-cli --scan --pattern "${KEY_PREFIX}*" | while read -r key; do
            redis-cli del "$key" >/dev/null
        done
    fi
    rm -rf "$LOGS"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port no socket uses right now, below the kernel's ephemeral range so outgoing connections
# (the gateway's own pool, loadgen's) cannot take it between this check and the bind. A lost
# race still shows up as the gateway exiting at once, and the start is retried on a new port.
free_port() {
    local low port
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 11000 ] || low=32768
    for _ in $(seq 1 100); do
        port=$((10000 + RANDOM % (low - 10000)))
        if command -v ss >/dev/null; then
            [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ] && { echo "$port"; return 0; }
        elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "run.sh: no free port found" >&2
    return 1
}

# Waits (at most $3 tenths of a second) until $2 answers 200, failing early if pid $1 died.
wait_ready() {
    local pid=$1 url=$2 tries=$3
    for _ in $(seq 1 "$tries"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url")" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

if [ "$BUILD" = 1 ]; then
    echo "== building release binaries"
    (cd "$ROOT" && cargo build --release -p affine-gateway -p chutes-sim -p loadgen -p chain-sim)
fi

# Other work on the machine shows up as latency (and as send lag) in both columns.
LOAD1=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 0.5) }'; then
    echo "run.sh: warning: load average is $LOAD1; other work will add noise to the tails" >&2
fi

echo "== starting chutes-sim"
"$BIN/chutes-sim" --listen 127.0.0.1:0 --record-requests 0 >"$LOGS/sim.out" 2>"$LOGS/sim.err" &
SIM_PID=$!
SIM_BASE=""
for _ in $(seq 1 100); do
    SIM_BASE=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$LOGS/sim.out" 2>/dev/null || true)
    [ -n "$SIM_BASE" ] && break
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$SIM_BASE" ]; then
    echo "run.sh: chutes-sim did not start:" >&2
    cat "$LOGS/sim.err" >&2
    exit 1
fi
wait_ready "$SIM_PID" "$SIM_BASE/v1/models" 100 || { echo "run.sh: chutes-sim not answering" >&2; exit 1; }

CONFIG="$(dirname "$0")/bench.toml"
if [ "$USE_CHAIN" = 1 ]; then
    echo "== starting chain-sim"
    "$BIN/chain-sim" --listen 127.0.0.1:0 --block-ms 1000 >"$LOGS/chain.out" 2>"$LOGS/chain.err" &
    CHAIN_PID=$!
    CHAIN_BASE=""
    for _ in $(seq 1 100); do
        CHAIN_BASE=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$LOGS/chain.out" 2>/dev/null | head -n1 || true)
        [ -n "$CHAIN_BASE" ] && break
        kill -0 "$CHAIN_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$CHAIN_BASE" ] || { echo "run.sh: chain-sim did not start:" >&2; cat "$LOGS/chain.err" >&2; exit 1; }
    # The bench configuration plus a chain section that keeps up with a block a second.
    CONFIG="$LOGS/bench-chain.toml"
    cat "$(dirname "$0")/bench.toml" - >"$CONFIG" <<TOML

[chain]
endpoints = ["$CHAIN_BASE"]
netuids = [1]
deposit_address = "$DEPOSIT_ADDRESS"
requests_per_second = 200
metagraph_secs = 5
deposit_poll_secs = 1
TOML
fi

echo "== starting affine-gateway"
GW_READY=0
for attempt in 1 2 3; do
    GW_PORT=$(free_port)
    GW_BASE="http://127.0.0.1:$GW_PORT"
    GW_ENV=(
        "GATEWAY_LISTEN=127.0.0.1:$GW_PORT"
        "GATEWAY_UPSTREAM_URL=$SIM_BASE/v1"
        "CHUTES_API_KEY=bench"
        "GATEWAY_WINNER=$MODEL"
        "RUST_LOG=warn"
        # Bounds how long stopping it can take if requests are still in flight.
        "GATEWAY_DRAIN_TIMEOUT_SECS=5"
    )
    if [ "$USE_REDIS" = 1 ]; then
        GW_ENV+=("GATEWAY_REDIS_URL=redis://127.0.0.1:6379" "GATEWAY_KEY_PREFIX=$KEY_PREFIX")
    fi
    env "${GW_ENV[@]}" "$BIN/affine-gateway" serve --config "$CONFIG" >"$LOGS/gw.out" 2>"$LOGS/gw.err" &
    GW_PID=$!
    if wait_ready "$GW_PID" "$GW_BASE/readyz" 150; then
        GW_READY=1
        break
    fi
    if kill -0 "$GW_PID" 2>/dev/null; then
        echo "run.sh: the gateway did not become ready within 15 s:" >&2
        break
    fi
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=""
    if ! grep -q "Address already in use" "$LOGS/gw.err"; then
        echo "run.sh: the gateway exited:" >&2
        break
    fi
    echo "run.sh: port $GW_PORT was taken (attempt $attempt), trying another" >&2
done
if [ "$GW_READY" != 1 ]; then
    cat "$LOGS/gw.out" "$LOGS/gw.err" >&2
    exit 1
fi

# Once callers must authenticate, the gateway prints a dev token at start when no JWT secret
# is configured; use it if it is there.
GW_AUTH=()
TOKEN=$(grep -ho 'dev token: [^ ]*' "$LOGS/gw.out" "$LOGS/gw.err" 2>/dev/null | head -n1 | cut -d' ' -f3 || true)
if [ -n "$TOKEN" ]; then
    GW_AUTH=(--header "authorization: Bearer $TOKEN")
fi

DIRECT_BODY="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\"}],\"max_tokens\":64"
GATEWAY_BODY='{"input":"2+2?","max_tokens":64'

# run_load NAME URL BODY [loadgen args...]: one loadgen run, its JSON kept in $OUT/NAME.json.
run_load() {
    local name=$1 url=$2 body=$3
    shift 3
    echo "== $name: POST $url at $RATE/s for $DURATION (+$WARMUP warm-up)"
    "$BIN/loadgen" --url "$url" --method POST --body "$body" --rate "$RATE" \
        --duration "$DURATION" --warmup "$WARMUP" --connections "$CONNECTIONS" --json "$@" \
        >"$OUT/$name.json" &
    LOADGEN_PID=$!
    # `wait` returns at once on a signal, so Ctrl-C reaches the trap without waiting for the run.
    wait "$LOADGEN_PID"
    LOADGEN_PID=""
    jq -r '"   ok \(.ok)/\(.scheduled), errors \(.errors), achieved \(.achieved_rate)/s, p99 \(.latency_ms.p99) ms, send lag p99 \(.send_lag_ms.p99) ms"' "$OUT/$name.json"
}

if [ "$USE_CHAIN" = 1 ]; then
    # One transfer a second to the deposit address while the load runs (unattributed: the
    # sender is linked to no account), so the poller decodes and records under load.
    (while true; do
        curl -s -o /dev/null -X POST "$CHAIN_BASE/_chain/transfer" -H 'content-type: application/json' \
            -d "{\"from\":\"$SENDER\",\"to\":\"$DEPOSIT_ADDRESS\",\"amount\":1000}" || true
        sleep 1
    done) &
    TRANSFERS_PID=$!
fi

run_load direct "$SIM_BASE/v1/chat/completions" "$DIRECT_BODY}"
run_load gateway "$GW_BASE/v1/reason" "$GATEWAY_BODY}" "${GW_AUTH[@]}"
run_load direct_stream "$SIM_BASE/v1/chat/completions" "$DIRECT_BODY,\"stream\":true}"
run_load gateway_stream "$GW_BASE/v1/reason" "$GATEWAY_BODY,\"stream\":true}" "${GW_AUTH[@]}"

# BENCH_COMMIT labels the results when the tree is not a git checkout (an exported copy).
COMMIT=${BENCH_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ -z "${BENCH_COMMIT:-}" ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n1)" ]; then
    COMMIT="$COMMIT+dirty"
fi
jq -n \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg commit "$COMMIT" \
    --arg host "$(uname -n)" \
    --argjson cores "$(nproc)" \
    --argjson redis "$([ "$USE_REDIS" = 1 ] && echo true || echo false)" \
    --slurpfile direct "$OUT/direct.json" \
    --slurpfile gateway "$OUT/gateway.json" \
    --slurpfile direct_stream "$OUT/direct_stream.json" \
    --slurpfile gateway_stream "$OUT/gateway_stream.json" \
    '{date: $date, commit: $commit, host: $host, cores: $cores, redis: $redis,
      runs: {direct: $direct[0], gateway: $gateway[0],
             direct_stream: $direct_stream[0], gateway_stream: $gateway_stream[0]}}' \
    >"$OUT/results.json"

# table DIRECT GATEWAY TITLE: percentile rows of the two runs and their difference.
table() {
    jq -r --arg title "$3" -n --slurpfile d "$OUT/$1.json" --slurpfile g "$OUT/$2.json" '
        def f3: (. * 1000 | round) as $n | (if $n < 0 then -$n else $n end) as $a
            | (if $n < 0 then "-" else "" end) + ($a / 1000 | floor | tostring) + "."
              + ("00" + ($a % 1000 | tostring) | .[-3:]);
        def pad(n): (" " * ([n - length, 0] | max)) + .;
        def row($name; $a; $b): ($name + "              " | .[0:14])
            + ($a | f3 | pad(10)) + ($b | f3 | pad(12)) + ($b - $a | f3 | pad(12));
        ($d[0].latency_ms) as $dl | ($g[0].latency_ms) as $gl |
        "\n\($title)  (ok: direct \($d[0].ok)/\($d[0].scheduled), gateway \($g[0].ok)/\($g[0].scheduled))",
        "ms                direct     gateway    overhead",
        (["p50", "p90", "p99", "p99_9", "max"][] as $p | row($p | sub("_"; "."); $dl[$p]; $gl[$p])),
        ("send lag p99" + "              " | .[0:14])
            + ($d[0].send_lag_ms.p99 | f3 | pad(10)) + ($g[0].send_lag_ms.p99 | f3 | pad(12))
    '
}

echo
echo "Latency from due time to last byte, $RATE req/s, $DURATION, $(nproc) cores shared by simulator, gateway and loadgen"
echo "commit $COMMIT, redis $([ "$USE_REDIS" = 1 ] && echo on || echo off)"
table direct gateway "whole answers"
table direct_stream gateway_stream "streamed answers"
echo
jq -r '
    [.runs.gateway, .runs.gateway_stream] as $g | [.runs.direct, .runs.direct_stream] as $d |
    [range(0; 2) | ($g[.].latency_ms.p99 - $d[.].latency_ms.p99)] as $over |
    [range(0; 2) | ($g[.].errors | length) + ($d[.].errors | length)] as $errs |
    "budget (p99 overhead <= 1 ms): whole \($over[0] * 1000 | round / 1000) ms, streamed \($over[1] * 1000 | round / 1000) ms -> " +
    (if ($over | max) <= 1 and ($errs | add) == 0 then "within budget"
     elif ($errs | add) > 0 then "INVALID (some requests failed; see errors above)"
     else "OVER BUDGET" end),
    # A direct run whose own requests went out late measured the machine, not the servers.
    if any(.runs.direct, .runs.direct_stream; .send_lag_ms.p99 > 1) then
        "warning: loadgen sent direct requests > 1 ms late at p99: the machine was busy; rerun before trusting the tails"
    else empty end
' "$OUT/results.json"
if [ "$USE_CHAIN" = 1 ]; then
    echo "chain: $(curl -s "$GW_BASE/metrics" | grep -E '^agw_(deposits_total|deposit_lag_blocks|deposit_poll_errors_total|metagraph_syncs_total\{netuid="1",outcome="ok"\})' | tr '\n' ' ')"
fi
echo "results: $OUT/results.json"
