#!/usr/bin/env bash
# What the gateway adds on top of its upstream, at constant rates, for what callers do.
#
#   loadtests/run.sh [--scenario bearer,session,signed,stream] [--store memory,redis,cluster]
#                    [--rate 2000[,4000...]] [--upstream nginx|sim] [--saturation] [--litellm]
#                    [--matrix] [--duration 10s] [--warmup 2s] [--connections 64] [--chain] [--no-build]
#                    [--perf]
#
# Starts the upstream (nginx serving a fixed answer, or chutes-sim), the store (nothing for
# memory; a private redis-server; a private 3-master Redis Cluster) and the gateway in front,
# on free 127.0.0.1 ports. For every rate it measures the upstream directly (the baseline) and
# then each scenario through the gateway, and prints one table: achieved rate, errors,
# p50/p90/p99/p99.9, added latency vs direct at the same percentile, time to first data field
# for streams, gateway CPU µs and RSS, Redis commands and Redis CPU µs per request. Every
# number is in target/loadtest/results.json (with --matrix: matrix.json and matrix.md), each
# run's own output in target/loadtest/runs/. Everything it starts is stopped on exit, Ctrl-C
# included. --matrix = every scenario and store at 2,000, 4,000 and 5,000 req/s, a
# saturation run and LiteLLM, 8 s per run (~15 minutes). --perf records a system-wide perf
# profile over each gateway run's measured window (runs/NAME.perf.txt: CPU by process, then
# the gateway's own symbols). See loadtests/README.md.
set -euo pipefail

RATES=${RATE:-2000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
SCENARIOS=bearer,stream
STORES=memory
UPSTREAM=${UPSTREAM:-}
SATURATION=0
SAT_RATE=${SAT_RATE:-8000}
USE_LITELLM=0
USE_CHAIN=0
BUILD=1
MATRIX=0
PERF=0
MODEL=affine-champ/Affine-Reasoner-32B
# The signing key of the signed and session scenarios (a dev key; its hotkey has no account,
# so it calls on the `public` plan, which bench.toml raises like the bearer token's).
SIGNER=//Alice

usage() {
    sed -n '4,7p' "$0" | sed 's/^# *//'
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATES=${2:?--rate needs a value}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift 2 ;;
        --scenario) SCENARIOS=${2:?--scenario needs a value}; shift 2 ;;
        --store) STORES=${2:?--store needs a value}; shift 2 ;;
        --redis) STORES=redis; shift ;;
        --upstream) UPSTREAM=${2:?--upstream needs nginx or sim}; shift 2 ;;
        --saturation) SATURATION=1; shift ;;
        --litellm) USE_LITELLM=1; shift ;;
        --matrix) MATRIX=1; shift ;;
        --chain) USE_CHAIN=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --perf) PERF=1; shift ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
done
if [ "$MATRIX" = 1 ]; then
    SCENARIOS=bearer,session,signed,stream
    STORES=memory,redis,cluster
    RATES=2000,4000,5000
    SATURATION=1
    USE_LITELLM=1
    [ "$DURATION" = 10s ] && DURATION=8s
fi
for s in ${SCENARIOS//,/ }; do
    case "$s" in bearer|session|signed|stream) ;; *) echo "run.sh: unknown scenario $s" >&2; usage ;; esac
done
for s in ${STORES//,/ }; do
    case "$s" in memory|redis|cluster) ;; *) echo "run.sh: unknown store $s" >&2; usage ;; esac
done

command -v jq >/dev/null || { echo "run.sh: jq is required" >&2; exit 2; }
command -v curl >/dev/null || { echo "run.sh: curl is required" >&2; exit 2; }
if [ -z "$UPSTREAM" ]; then
    if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then UPSTREAM=nginx; else UPSTREAM=sim; fi
fi
case "$UPSTREAM" in
    nginx) NGINX=$(command -v nginx || echo /usr/sbin/nginx)
           [ -x "$NGINX" ] || { echo "run.sh: nginx not found (apt-get install -y nginx-light)" >&2; exit 2; } ;;
    sim) ;;
    *) echo "run.sh: --upstream is nginx or sim" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN:-"$ROOT/target/release"}
OUT="$ROOT/target/loadtest"
RUNS="$OUT/runs"
mkdir -p "$RUNS"
rm -f "$RUNS"/*.json "$OUT/rows.jsonl"
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/loadtest.XXXXXX")
# oha (whole-answer bearer and session runs) when installed; see loadtests/README.md.
OHA=${OHA:-"$ROOT/target/tools/oha/bin/oha"}
[ -x "$OHA" ] || OHA=$(command -v oha || true)
LITELLM_VENV=${LITELLM_VENV:-"$ROOT/target/tools/litellm-venv"}

# Processes this script started, by pid; stopped in reverse order on exit.
PIDS=()
GW_PID=""
LOADGEN_PID=""
CHAIN_PID=""
TRANSFERS_PID=""
DEPOSIT_ADDRESS=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY
SENDER=5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty

stop_pid() {
    local pid=$1
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$LOADGEN_PID"
    stop_pid "$TRANSFERS_PID"
    stop_pid "$GW_PID"
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
    stop_pid "$CHAIN_PID"
    rm -rf "$LOGS"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port no socket uses right now, below the kernel's ephemeral range so outgoing connections
# cannot take it between this check and the bind. A lost race shows up as a server exiting at
# once; the gateway's start is retried on a new port.
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
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

if [ "$BUILD" = 1 ]; then
    echo "== building release binaries"
    (cd "$ROOT" && cargo build --release -p affine-gateway -p chutes-sim -p loadgen -p chain-sim)
fi

LOAD1=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 0.5) }'; then
    echo "run.sh: warning: load average is $LOAD1; other work will add noise to the tails" >&2
fi

# ---------------------------------------------------------------- upstream
# UP_WHOLE / UP_STREAM: base URLs (…/v1) answering whole and streamed chat completions.
start_upstream() {
    if [ "$UPSTREAM" = nginx ]; then
        echo "== starting nginx (fixed answers from loadtests/nginx/)"
        local dir="$LOGS/nginx" pw ps
        mkdir -p "$dir/root"
        cp "$HERE"/nginx/*.json "$HERE"/nginx/*.sse "$dir/root/"
        # nginx's workers run as an unprivileged user when started as root: they must read this.
        chmod 755 "$LOGS" "$dir" "$dir/root"
        chmod 644 "$dir"/root/*
        pw=$(free_port); ps=$(free_port)
        while [ "$ps" = "$pw" ]; do ps=$(free_port); done
        sed -e "s|@RUN@|$dir|g" -e "s|@ROOT@|$dir/root|g" \
            -e "s|@PORT_WHOLE@|$pw|g" -e "s|@PORT_STREAM@|$ps|g" \
            "$HERE/nginx/nginx.conf.in" >"$dir/nginx.conf"
        "$NGINX" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >"$LOGS/nginx.out" 2>&1 &
        PIDS+=($!)
        UP_WHOLE="http://127.0.0.1:$pw/v1"
        UP_STREAM="http://127.0.0.1:$ps/v1"
        wait_ready "${PIDS[-1]}" "$UP_WHOLE/models" 50 && wait_ready "${PIDS[-1]}" "$UP_STREAM/models" 50 \
            || { echo "run.sh: nginx did not start:" >&2; cat "$LOGS/nginx.out" "$dir/error.log" >&2; exit 1; }
    else
        echo "== starting chutes-sim"
        "$BIN/chutes-sim" --listen 127.0.0.1:0 --record-requests 0 >"$LOGS/sim.out" 2>"$LOGS/sim.err" &
        PIDS+=($!)
        local base=""
        for _ in $(seq 1 100); do
            base=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$LOGS/sim.out" 2>/dev/null || true)
            [ -n "$base" ] && break
            kill -0 "${PIDS[-1]}" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "$base" ] || { echo "run.sh: chutes-sim did not start:" >&2; cat "$LOGS/sim.err" >&2; exit 1; }
        wait_ready "${PIDS[-1]}" "$base/v1/models" 100 || { echo "run.sh: chutes-sim not answering" >&2; exit 1; }
        UP_WHOLE="$base/v1"
        UP_STREAM="$base/v1"
    fi
}

# ---------------------------------------------------------------- stores
# STORE_URL: GATEWAY_REDIS_URL ("" for memory); REDIS_NODES: the nodes loadgen asks INFO.
STORE_PIDS=()
start_redis_node() { # PORT [extra redis-server args...]
    local port=$1
    shift
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$LOGS" \
        --dbfilename "dump-$port.rdb" "$@" >"$LOGS/redis-$port.log" 2>&1 &
    STORE_PIDS+=($!)
    PIDS+=($!)
    for _ in $(seq 1 50); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "run.sh: redis-server on $port did not start:" >&2
    cat "$LOGS/redis-$port.log" >&2
    return 1
}

start_store() {
    STORE_URL=""
    REDIS_NODES=""
    STORE_PIDS=()
    case "$1" in
        memory) ;;
        redis)
            command -v redis-server >/dev/null || { echo "run.sh: redis-server is required for --store redis" >&2; exit 2; }
            local p
            p=$(free_port)
            start_redis_node "$p"
            STORE_URL="redis://127.0.0.1:$p"
            REDIS_NODES="127.0.0.1:$p"
            ;;
        cluster)
            command -v redis-server >/dev/null || { echo "run.sh: redis-server is required for --store cluster" >&2; exit 2; }
            local ports=() p i
            for i in 1 2 3; do
                p=$(free_port)
                start_redis_node "$p" --cluster-enabled yes --cluster-config-file "$LOGS/nodes-$p.conf" \
                    --cluster-node-timeout 5000
                ports+=("$p")
            done
            redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}" \
                --cluster-replicas 0 --cluster-yes >"$LOGS/cluster-create.log" 2>&1 \
                || { echo "run.sh: cluster create failed:" >&2; cat "$LOGS/cluster-create.log" >&2; exit 1; }
            # Every node must agree the slots are covered before clients connect.
            for p in "${ports[@]}"; do
                for _ in $(seq 1 100); do
                    redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
                    sleep 0.1
                done
            done
            STORE_URL="redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
            REDIS_NODES="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
            ;;
    esac
}

stop_store() {
    local pid
    for pid in "${STORE_PIDS[@]}"; do stop_pid "$pid"; done
    STORE_PIDS=()
    STORE_URL=""
    REDIS_NODES=""
    rm -f "$LOGS"/nodes-*.conf "$LOGS"/dump-*.rdb
}

# ---------------------------------------------------------------- gateway
CONFIG="$HERE/bench.toml"
start_chain() {
    echo "== starting chain-sim"
    "$BIN/chain-sim" --listen 127.0.0.1:0 --block-ms 1000 >"$LOGS/chain.out" 2>"$LOGS/chain.err" &
    CHAIN_PID=$!
    local base=""
    for _ in $(seq 1 100); do
        base=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$LOGS/chain.out" 2>/dev/null | head -n1 || true)
        [ -n "$base" ] && break
        kill -0 "$CHAIN_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$base" ] || { echo "run.sh: chain-sim did not start:" >&2; cat "$LOGS/chain.err" >&2; exit 1; }
    CHAIN_BASE=$base
    # The bench configuration plus a chain section that keeps up with a block a second.
    CONFIG="$LOGS/bench-chain.toml"
    cat "$HERE/bench.toml" - >"$CONFIG" <<TOML

[chain]
endpoints = ["$CHAIN_BASE"]
netuids = [1]
deposit_address = "$DEPOSIT_ADDRESS"
requests_per_second = 200
metagraph_secs = 5
deposit_poll_secs = 1
TOML
}

# start_gateway UPSTREAM_BASE: sets GW_PID, GW_BASE, TOKEN (the dev bearer token); returns 1
# (with the log on stderr) when the gateway does not start, e.g. a store it cannot use yet.
start_gateway() {
    local upstream=$1 attempt port
    for attempt in 1 2 3; do
        port=$(free_port)
        GW_BASE="http://127.0.0.1:$port"
        local env=(
            "GATEWAY_LISTEN=127.0.0.1:$port"
            "GATEWAY_UPSTREAM_URL=$upstream"
            "CHUTES_API_KEY=bench"
            "GATEWAY_WINNER=$MODEL"
            "RUST_LOG=warn"
            "GATEWAY_DRAIN_TIMEOUT_SECS=5"
            "GATEWAY_JOURNAL_PATH=$LOGS/journal-$port"
        )
        [ -n "$STORE_URL" ] && env+=("GATEWAY_REDIS_URL=$STORE_URL" "GATEWAY_KEY_PREFIX=agw-bench-$$:")
        env "${env[@]}" "$BIN/affine-gateway" serve --config "$CONFIG" >"$LOGS/gw.out" 2>"$LOGS/gw.err" &
        GW_PID=$!
        if wait_ready "$GW_PID" "$GW_BASE/readyz" 150; then
            TOKEN=$(grep -ho 'dev token: [^ ]*' "$LOGS/gw.out" | head -n1 | cut -d' ' -f3 || true)
            return 0
        fi
        if kill -0 "$GW_PID" 2>/dev/null; then
            echo "run.sh: the gateway did not become ready within 15 s:" >&2
            stop_gateway
            break
        fi
        wait "$GW_PID" 2>/dev/null || true
        GW_PID=""
        grep -q "Address already in use" "$LOGS/gw.err" || { echo "run.sh: the gateway exited:" >&2; break; }
        echo "run.sh: port $port was taken (attempt $attempt), trying another" >&2
    done
    cat "$LOGS/gw.out" "$LOGS/gw.err" >&2
    return 1
}

stop_gateway() {
    stop_pid "$GW_PID"
    GW_PID=""
}

# A session token (POST /v1/auth/session signed with btauth/1) for the signing key.
session_token() {
    local headers=() line
    while IFS= read -r line; do headers+=(-H "$line"); done < <(
        "$BIN/loadgen" --url "$GW_BASE/v1/auth/session" --method POST --sign-btauth "$SIGNER" --print-signed-headers)
    curl -sf -X POST "${headers[@]}" "$GW_BASE/v1/auth/session" | jq -r .token
}

# ---------------------------------------------------------------- measuring
DIRECT_BODY="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\"}],\"max_tokens\":64"
GATEWAY_BODY='{"input":"2+2?","max_tokens":64'

# measure NAME TOOL RATE URL BODY [loadgen/oha args...]: one run, normalised to loadgen's JSON
# shape in $RUNS/NAME.json. TOOL is loadgen or oha; OBSERVE_PID / REDIS_NODES (when set) are
# accounted over the run.
measure() {
    local name=$1 tool=$2 rate=$3 url=$4 body=$5
    shift 5
    local observe=()
    [ -n "${OBSERVE_PID:-}" ] && observe+=(--gateway-pid "$OBSERVE_PID")
    [ -n "${REDIS_NODES:-}" ] && [ "${OBSERVE_REDIS:-1}" = 1 ] && observe+=(--redis-url "$REDIS_NODES")
    echo "== $name: POST $url at $rate/s for $DURATION (+$WARMUP warm-up) with $tool"
    perf_start "$name"
    if [ "$tool" = oha ]; then
        oha_run "$name" "$rate" "$url" "$body" "${observe[@]}" -- "$@"
    else
        "$BIN/loadgen" --url "$url" --method POST --body "$body" --rate "$rate" \
            --duration "$DURATION" --warmup "$WARMUP" --connections "$CONNECTIONS" --json \
            "${observe[@]}" "$@" --output "$RUNS/$name.json" &
        LOADGEN_PID=$!
        # `wait` returns at once on a signal, so Ctrl-C reaches the trap without waiting.
        if ! wait "$LOADGEN_PID"; then
            LOADGEN_PID=""
            failed_run "$name" loadgen "$url" "$rate"
            return 0
        fi
        LOADGEN_PID=""
        jq -c --arg tool loadgen '. + {tool: $tool}' "$RUNS/$name.json" >"$RUNS/$name.tmp" && mv "$RUNS/$name.tmp" "$RUNS/$name.json"
    fi
    perf_finish "$name"
    jq -r '"   ok \(.ok)/\(.scheduled), errors \(.errors), achieved \(.achieved_rate)/s, p99 \(.latency_ms.p99) ms"
        + (if .gateway then ", cpu \(.gateway.cpu_us_per_request) µs/req" else "" end)
        + (if .redis then ", redis \(.redis.commands_per_request) cmds \(.redis.cpu_us_per_request) µs/req" else "" end)' \
        "$RUNS/$name.json"
}

# perf_start NAME / perf_finish NAME (--perf, gateway runs only): a system-wide profile of the
# measured window (after the warm-up), so the share of each process on the shared cores — the
# gateway, Redis, nginx, the load generator, the kernel's own threads — comes from the same
# samples as the gateway's own hot symbols. No call graphs: unwinding every sample slowed the
# gateway by a third, a flat profile by a few percent. Written to $RUNS/NAME.perf.txt.
PERF_PID=""
perf_start() {
    PERF_PID=""
    [ "$PERF" = 1 ] && [ -n "${OBSERVE_PID:-}" ] || return 0
    local warm=${WARMUP%s} dur=${DURATION%s}
    # Process names when the window opens (the load generator has started by then): threads
    # are named after their runtime (tokio-rt-worker in the gateway and in loadgen alike), so
    # samples are grouped by process id.
    (sleep "$warm"; ps -eo pid=,comm= >"$RUNS/$1.perf.ps"; exec perf record -a -F 999 -o "$RUNS/$1.perf.data" -- sleep "$dur") \
        >"$RUNS/$1.perf.log" 2>&1 &
    PERF_PID=$!
}
perf_finish() {
    [ -n "$PERF_PID" ] || return 0
    wait "$PERF_PID" || true
    PERF_PID=""
    local data="$RUNS/$1.perf.data" out="$RUNS/$1.perf.txt"
    [ -s "$data" ] || { echo "run.sh: perf recorded nothing for $1 (see $RUNS/$1.perf.log)" >&2; return 0; }
    {
        echo "# $1: CPU samples by process, whole machine (2 cores), measured window"
        perf script -i "$data" -F pid 2>/dev/null | awk -v ps="$RUNS/$1.perf.ps" -v gw="$OBSERVE_PID" '
            BEGIN { while ((getline l < ps) > 0) { split(l, f, " "); name[f[1]] = f[2] } }
            { n[$1]++; t++ }
            END { for (p in n) { w = (p == 0) ? "idle" : (p in name ? name[p] : "other");
                                 if (p == gw) w = w " (gateway)"; by[w] += n[p] }
                  for (w in by) printf "%6.2f%%  %s\n", 100 * by[w] / t, w }' | sort -rn
        echo "# $1: the gateway's samples by kind (symbol name patterns)"
        perf report -i "$data" --stdio --no-children --pid "$OBSERVE_PID" --percentage relative --sort dso,sym \
            --percent-limit 0 2>/dev/null | awk '
            /^ *[0-9.]+%/ { pct = $1; sub("%", "", pct); line = $0
                k = "other (std, glue)"
                if (line ~ /\[k\]/) k = "kernel (syscalls, network stack, scheduler)"
                else if (line ~ /_mi_|mi_free|mi_malloc|memmove|memcpy|memset/) k = "allocator and memcpy (mimalloc, libc)"
                else if (line ~ /curve25519|schnorrkel|merlin|sha2|blake2|keccak|sp_core|ed25519/) k = "signature crypto"
                else if (line ~ /tokio::/) k = "tokio (scheduler, timers, I\/O driver)"
                else if (line ~ /hyper|httparse|h2::|http::/) k = "hyper and HTTP parsing"
                else if (line ~ /redis::|combine::/) k = "redis client"
                else if (line ~ /serde|json/) k = "serde / JSON"
                else if (line ~ /reqwest|tower|axum|futures/) k = "reqwest, tower, axum, futures"
                else if (line ~ /affine_gateway|chutes_sim/) k = "the gateway'"'"'s own code"
                by[k] += pct; t += pct }
            END { for (k in by) printf "%6.2f%%  %s\n", 100 * by[k] / t, k }' | sort -rn
        echo "# $1: the gateway's hottest symbols (share of the gateway's samples)"
        perf report -i "$data" --stdio --no-children --pid "$OBSERVE_PID" --percentage relative --sort dso,sym \
            --percent-limit 0.8 2>/dev/null | grep -E '^ *[0-9.]+%' | cut -c1-160
    } >"$out"
    rm -f "$data" "$RUNS/$1.perf.ps"
    echo "   perf: $out"
}

# failed_run NAME TOOL URL RATE: a run whose tool failed (its message is above) still gets a
# row, with the failure as its only error, so one broken run does not end a long matrix.
failed_run() {
    echo "run.sh: $2 failed in $1" >&2
    jq -n --arg tool "$2" --arg url "$3" --argjson rate "$4" \
        '{tool: $tool, url: $url, rate: $rate, scheduled: 0, ok: 0, errors: {"run_failed": 1},
          achieved_rate: 0, latency_ms: {}}' >"$RUNS/$1.json"
}

# oha_run NAME RATE URL BODY [observe args] -- [extra headers as loadgen args]: oha at RATE
# with coordinated-omission correction, wrapped in loadgen for the CPU/Redis accounting; the
# result is converted to loadgen's JSON shape (per-request figures over oha's responses).
oha_run() {
    local name=$1 rate=$2 url=$3 body=$4
    shift 4
    local observe=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do observe+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    local headers=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --header|-H) headers+=(-H "$2"); shift 2 ;;
            *) shift ;;
        esac
    done
    local oha_common=(--no-tui -c "$CONNECTIONS" -m POST -T application/json -d "$body" "${headers[@]}")
    # oha has no warm-up of its own: a separate, unaccounted run at the same rate first.
    "$OHA" "${oha_common[@]}" -q "$rate" -z "$WARMUP" --latency-correction "$url" >/dev/null 2>&1 || true
    "$BIN/loadgen" "${observe[@]}" --output "$RUNS/$name.watch.json" -- \
        "$OHA" "${oha_common[@]}" -q "$rate" -z "$DURATION" -w --latency-correction --output-format json "$url" \
        >"$RUNS/$name.oha.json" &
    LOADGEN_PID=$!
    if ! wait "$LOADGEN_PID"; then
        LOADGEN_PID=""
        failed_run "$name" oha "$url" "$rate"
        return 0
    fi
    LOADGEN_PID=""
    jq -n --slurpfile o "$RUNS/$name.oha.json" --slurpfile w "$RUNS/$name.watch.json" \
        --arg url "$url" --argjson rate "$rate" --argjson connections "$CONNECTIONS" -f "$HERE/oha.jq" \
        >"$RUNS/$name.json"
}

# row KIND SCENARIO STORE RATE RUN BASELINE: one line of the table (rows.jsonl), the run
# against its direct baseline (same tool, same rate, same kind of answer); a run without a
# single success has no latency to compare.
row() {
    local kind=$1 scenario=$2 store=$3 rate=$4 run=$5 base=${6:-}
    local basefile="$RUNS/$base.json"
    [ -n "$base" ] && [ -f "$basefile" ] || basefile=/dev/null
    jq -c -n --arg kind "$kind" --arg scenario "$scenario" --arg store "$store" --arg rate "$rate" \
        --arg base "$base" --slurpfile r "$RUNS/$run.json" --slurpfile d "$basefile" '
        ($r[0]) as $r | ($d[0] // null) as $d |
        {kind: $kind, scenario: $scenario, store: $store, rate: $rate, tool: $r.tool, run: $r,
         direct: (if $d then $base else null end),
         added_ms: (if $d and $r.ok > 0 then ([ "p50", "p90", "p99", "p99_9" ] | map({key: ., value:
             (($r.latency_ms[.] - $d.latency_ms[.]) * 1000 | round / 1000)}) | from_entries) else null end)}
    ' >>"$OUT/rows.jsonl"
}

# ---------------------------------------------------------------- the runs
start_upstream
[ "$USE_CHAIN" = 1 ] && start_chain
WHOLE_TOOL=loadgen
[ -n "$OHA" ] && WHOLE_TOOL=oha
[ -n "$OHA" ] || echo "run.sh: oha not found; whole-answer bearer runs use loadgen (see loadtests/README.md for oha)" >&2
want() { [[ ",$SCENARIOS," == *",$1,"* ]]; }

# The direct baselines, once per rate: whole answers with each tool used, streams.
for rate in ${RATES//,/ }; do
    OBSERVE_PID=""
    if want bearer || want session; then
        measure "direct-whole-$WHOLE_TOOL-$rate" "$WHOLE_TOOL" "$rate" "$UP_WHOLE/chat/completions" "$DIRECT_BODY}"
        row direct direct - "$rate" "direct-whole-$WHOLE_TOOL-$rate"
    fi
    # Signed and LiteLLM runs are loadgen's: their baseline is loadgen's (unless the block
    # above was). LiteLLM saturates below these rates, and loadgen's run stays bounded then
    # (requests past their timeout are counted, not sent).
    if { want signed || [ "$USE_LITELLM" = 1 ]; } && [ ! -f "$RUNS/direct-whole-loadgen-$rate.json" ]; then
        measure "direct-whole-loadgen-$rate" loadgen "$rate" "$UP_WHOLE/chat/completions" "$DIRECT_BODY}"
        row direct direct - "$rate" "direct-whole-loadgen-$rate"
    fi
    if want stream || [ "$USE_LITELLM" = 1 ]; then
        measure "direct-stream-$rate" loadgen "$rate" "$UP_STREAM/chat/completions" "$DIRECT_BODY,\"stream\":true}" --stream
        row direct direct-stream - "$rate" "direct-stream-$rate"
    fi
done

# saturate NAME SCENARIO STORE URL BODY [args]: the highest rate the gateway sustains, from an
# open-loop run offered far above it for 3 s (achieved rate is the figure; latencies are
# queueing). The timeout is long so every request is answered: a short one would abort the
# requests that waited longest mid-flight and measure reconnections instead of capacity.
saturate() {
    local name=$1 scenario=$2 store=$3 url=$4 body=$5
    shift 5
    local d=$DURATION w=$WARMUP
    DURATION=3s WARMUP=1s
    measure "$name" loadgen "$SAT_RATE" "$url" "$body" --timeout 60s "$@"
    DURATION=$d WARMUP=$w
    row saturation "$scenario" "$store" saturation "$name"
}

if [ "$USE_CHAIN" = 1 ]; then
    # One transfer a second to the deposit address while the load runs (unattributed).
    (while true; do
        curl -s -o /dev/null -X POST "$CHAIN_BASE/_chain/transfer" -H 'content-type: application/json' \
            -d "{\"from\":\"$SENDER\",\"to\":\"$DEPOSIT_ADDRESS\",\"amount\":1000}" || true
        sleep 1
    done) &
    TRANSFERS_PID=$!
fi

for store in ${STORES//,/ }; do
    start_store "$store"
    # Whole-answer scenarios, then streams (with nginx they have their own upstream port).
    for phase in whole stream; do
        if [ "$phase" = whole ]; then
            want bearer || want session || want signed || continue
            up=$UP_WHOLE
        else
            want stream || continue
            up=$UP_STREAM
        fi
        echo "== affine-gateway, store $store, $phase answers"
        if ! start_gateway "$up"; then
            echo "run.sh: skipping store $store ($phase): the gateway did not start with $STORE_URL" >&2
            echo "{\"kind\":\"skipped\",\"store\":\"$store\",\"phase\":\"$phase\"}" >>"$OUT/rows.jsonl"
            continue
        fi
        OBSERVE_PID=$GW_PID
        bearer=(--header "authorization: Bearer $TOKEN")
        if [ "$phase" = whole ] && want session; then
            SESSION=$(session_token) || SESSION=""
            [ -n "$SESSION" ] && [ "$SESSION" != null ] || { echo "run.sh: no session token" >&2; exit 1; }
        fi
        for rate in ${RATES//,/ }; do
            if [ "$phase" = whole ]; then
                if want bearer; then
                    measure "bearer-$store-$rate" "$WHOLE_TOOL" "$rate" "$GW_BASE/v1/reason" "$GATEWAY_BODY}" "${bearer[@]}"
                    row gateway bearer "$store" "$rate" "bearer-$store-$rate" "direct-whole-$WHOLE_TOOL-$rate"
                fi
                if want session; then
                    measure "session-$store-$rate" "$WHOLE_TOOL" "$rate" "$GW_BASE/v1/reason" "$GATEWAY_BODY}" \
                        --header "authorization: Bearer $SESSION"
                    row gateway session "$store" "$rate" "session-$store-$rate" "direct-whole-$WHOLE_TOOL-$rate"
                fi
                if want signed; then
                    measure "signed-$store-$rate" loadgen "$rate" "$GW_BASE/v1/reason" "$GATEWAY_BODY}" --sign-btauth "$SIGNER"
                    row gateway signed "$store" "$rate" "signed-$store-$rate" "direct-whole-loadgen-$rate"
                fi
            else
                measure "stream-$store-$rate" loadgen "$rate" "$GW_BASE/v1/reason" "$GATEWAY_BODY,\"stream\":true}" \
                    --stream "${bearer[@]}"
                row gateway stream "$store" "$rate" "stream-$store-$rate" "direct-stream-$rate"
            fi
        done
        if [ "$SATURATION" = 1 ]; then
            if [ "$phase" = whole ]; then
                want bearer && saturate "bearer-$store-sat" bearer "$store" "$GW_BASE/v1/reason" "$GATEWAY_BODY}" "${bearer[@]}"
                want session && saturate "session-$store-sat" session "$store" "$GW_BASE/v1/reason" "$GATEWAY_BODY}" \
                    --header "authorization: Bearer $SESSION"
                want signed && saturate "signed-$store-sat" signed "$store" "$GW_BASE/v1/reason" "$GATEWAY_BODY}" --sign-btauth "$SIGNER"
            else
                saturate "stream-$store-sat" stream "$store" "$GW_BASE/v1/reason" "$GATEWAY_BODY,\"stream\":true}" --stream "${bearer[@]}"
            fi
        fi
        if [ "$USE_CHAIN" = 1 ]; then
            echo "chain: $(curl -s "$GW_BASE/metrics" | grep -E '^agw_(deposits_total|deposit_lag_blocks|deposit_poll_errors_total|metagraph_syncs_total\{netuid="1",outcome="ok"\})' | tr '\n' ' ')"
        fi
        stop_gateway
        OBSERVE_PID=""
    done
    stop_store
done

if [ "$USE_LITELLM" = 1 ]; then
    # shellcheck source=loadtests/litellm.sh
    source "$HERE/litellm.sh"
    if litellm_start "$UP_WHOLE" "$UP_STREAM"; then
        OBSERVE_PID=$LITELLM_PID
        # Besides the gateway's rates, one LiteLLM sustains on this machine (its latency when
        # not overloaded; no direct run at that rate, so no "added" column).
        for rate in ${LITELLM_RATE:-50} ${RATES//,/ }; do
            measure "litellm-whole-$rate" loadgen "$rate" "$LITELLM_BASE/v1/chat/completions" "$LITELLM_BODY}" \
                --timeout 5s --header "$LITELLM_AUTH"
            row litellm litellm "-" "$rate" "litellm-whole-$rate" "direct-whole-loadgen-$rate"
            measure "litellm-stream-$rate" loadgen "$rate" "$LITELLM_BASE/v1/chat/completions" \
                "$LITELLM_STREAM_BODY,\"stream\":true}" --stream --timeout 5s --header "$LITELLM_AUTH"
            row litellm litellm-stream "-" "$rate" "litellm-stream-$rate" "direct-stream-$rate"
        done
        OBSERVE_PID=""
        litellm_stop
    else
        echo "run.sh: LiteLLM did not start; its rows are missing (see loadtests/litellm.sh)" >&2
    fi
fi

# ---------------------------------------------------------------- results
COMMIT=${BENCH_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ -z "${BENCH_COMMIT:-}" ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n1)" ]; then
    COMMIT="$COMMIT+dirty"
fi
RESULT="$OUT/results.json"
[ "$MATRIX" = 1 ] && RESULT="$OUT/matrix.json"
jq -s \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg commit "$COMMIT" --arg host "$(uname -n)" \
    --argjson cores "$(nproc)" --arg upstream "$UPSTREAM" --arg duration "$DURATION" \
    --arg oha "$([ -n "$OHA" ] && "$OHA" --version 2>/dev/null | head -n1 || echo none)" \
    --arg nginx "$([ "$UPSTREAM" = nginx ] && "$NGINX" -v 2>&1 | head -n1 || echo none)" \
    --arg redis "$(redis-server --version 2>/dev/null | cut -d' ' -f3 || echo none)" \
    --arg litellm "${LITELLM_VERSION:-none}" \
    '{date: $date, commit: $commit, host: $host, cores: $cores, upstream: $upstream, duration: $duration,
      versions: {oha: $oha, nginx: $nginx, redis: $redis, litellm: $litellm}, rows: .}' \
    "$OUT/rows.jsonl" >"$RESULT"
jq -r -f "$HERE/table.jq" "$RESULT" | tee "${RESULT%.json}.md"
echo "results: $RESULT, ${RESULT%.json}.md"
