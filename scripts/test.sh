#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Prometheus rules, the deployment files
# (scripts/check-deploy.sh), the dependency audit (scripts/check-deps.sh), then every test of
# the workspace.
#
# It needs nothing running beforehand:
# - Redis: the tests share the server named by AGW_TEST_REDIS_URL (default
#   redis://127.0.0.1:6379; they use their own key prefixes and never flush). When that variable
#   is unset and nothing answers PING at AGW_TEST_REDIS_PROBE (host:port, default
#   127.0.0.1:6379), a throwaway redis-server (loopback only, no persistence) is started on a
#   free port for this run and stopped when the script ends, however it ends.
# - Redis Cluster: the cluster variants of the store, quota, replay, credit and metering tests
#   run on the 3-master cluster named by AGW_TEST_REDIS_CLUSTER_URL
#   (redis+cluster://host:port,host:port,host:port). When it is unset, a throwaway cluster
#   (three redis-server --cluster-enabled yes on free loopback ports, joined with
#   redis-cli --cluster create, no persistence) is started for this run and stopped with it.
# - redis-server and redis-cli must be installed either way: the outage tests start their own.
# - cargo-nextest: installed with `cargo install --locked` when missing; when that fails (e.g.
#   offline) the tests run under `cargo test` instead. AGW_TEST_NO_NEXTEST=1 forces that fallback.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  printf '\n!!!!!! redis-server not found: the tests need it (the outage tests start their own).\n!!!!!! Install it (Debian: apt-get install redis-server); .ci/run does.\n\n' >&2
  exit 1
fi
if ! command -v redis-cli >/dev/null 2>&1; then
  printf '\n!!!!!! redis-cli not found: the cluster tests need it to create their Redis Cluster.\n!!!!!! Install it (Debian: apt-get install redis-tools); .ci/run does.\n\n' >&2
  exit 1
fi

# True when a Redis at host $1, port $2 answers PING; no redis-cli needed.
redis_answers() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 &&
    IFS= read -r reply <&3 && [[ $reply == +PONG* ]]' _ "$1" "$2" 2>/dev/null
}

# True when something accepts connections on 127.0.0.1:$1.
port_taken() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

THROWAWAY_PID=""
THROWAWAY_DIR=""
CLUSTER_PIDS=()
CLUSTER_DIR=""
stop_throwaway() {
  if [ -n "$THROWAWAY_PID" ]; then
    kill "$THROWAWAY_PID" 2>/dev/null || true
    wait "$THROWAWAY_PID" 2>/dev/null || true
    echo "stopped the throwaway redis-server (pid $THROWAWAY_PID)" >&2
    THROWAWAY_PID=""
  fi
  if [ -n "$THROWAWAY_DIR" ]; then
    rm -rf "$THROWAWAY_DIR"
    THROWAWAY_DIR=""
  fi
  if [ "${#CLUSTER_PIDS[@]}" -gt 0 ]; then
    kill "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    wait "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    echo "stopped the throwaway Redis Cluster (pids ${CLUSTER_PIDS[*]})" >&2
    CLUSTER_PIDS=()
  fi
  if [ -n "$CLUSTER_DIR" ]; then
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=""
  fi
}
trap stop_throwaway EXIT
# Background jobs of a script ignore Ctrl-C, so the server would outlive an interrupted run
# without these; `exit` runs the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts redis-server on a free port and exports its URL. The port is chosen below Linux's
# ephemeral range (32768+), which the kernel never hands out to the tests' own sockets; a port
# taken between the check and the bind makes redis-server exit, and the next one is tried.
start_throwaway() {
  THROWAWAY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/agw-test-redis.XXXXXX")
  local port
  for _ in $(seq 1 20); do
    port=$((20000 + RANDOM % 12000))
    port_taken "$port" && continue
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
      --save '' --appendonly no --dir "$THROWAWAY_DIR" \
      --logfile "$THROWAWAY_DIR/redis.log" --daemonize no &
    THROWAWAY_PID=$!
    local deadline=$((SECONDS + 10))
    while kill -0 "$THROWAWAY_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
      if redis_answers 127.0.0.1 "$port"; then
        export AGW_TEST_REDIS_URL="redis://127.0.0.1:$port"
        echo "started a throwaway redis-server on 127.0.0.1:$port (pid $THROWAWAY_PID) for this run" >&2
        return 0
      fi
      sleep 0.05
    done
    kill "$THROWAWAY_PID" 2>/dev/null || true
    wait "$THROWAWAY_PID" 2>/dev/null || true
    THROWAWAY_PID=""
  done
  echo "could not start a throwaway redis-server; its last log lines:" >&2
  tail -n 20 "$THROWAWAY_DIR/redis.log" >&2 || true
  exit 1
}

# Starts a 3-master Redis Cluster on free loopback ports and exports its URL. Ports are chosen
# so that each node's cluster bus port (port + 10000) also stays below the ephemeral range.
start_cluster() {
  CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/agw-test-cluster.XXXXXX")
  local started_at=$SECONDS ports=() port pid
  for _ in $(seq 1 30); do
    [ "${#ports[@]}" -eq 3 ] && break
    port=$((20000 + RANDOM % 2700))
    port_taken "$port" && continue
    port_taken $((port + 10000)) && continue
    redis-server --port "$port" --cluster-enabled yes \
      --cluster-config-file "$CLUSTER_DIR/nodes-$port.conf" --bind 127.0.0.1 \
      --save '' --appendonly no --dir "$CLUSTER_DIR" \
      --logfile "$CLUSTER_DIR/redis-$port.log" --daemonize no &
    pid=$!
    local deadline=$((SECONDS + 10)) up=0
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
      if redis_answers 127.0.0.1 "$port"; then up=1; break; fi
      sleep 0.05
    done
    if [ "$up" = 1 ]; then
      CLUSTER_PIDS+=("$pid")
      ports+=("$port")
    else
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "${#ports[@]}" -ne 3 ]; then
    echo "could not start three cluster nodes; their last log lines:" >&2
    tail -n 20 "$CLUSTER_DIR"/redis-*.log >&2 || true
    exit 1
  fi
  local nodes=()
  for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 || {
    echo "redis-cli --cluster create failed:" >&2
    cat "$CLUSTER_DIR/create.log" >&2
    exit 1
  }
  local deadline=$((SECONDS + 30)) ok
  while :; do
    ok=1
    for port in "${ports[@]}"; do
      redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
    done
    [ "$ok" = 1 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "the throwaway Redis Cluster did not reach cluster_state:ok within 30 s" >&2
      exit 1
    fi
    sleep 0.05
  done
  export AGW_TEST_REDIS_CLUSTER_URL="redis+cluster://$(IFS=,; echo "${nodes[*]}")"
  echo "started a throwaway 3-master Redis Cluster on ${nodes[*]} (pids ${CLUSTER_PIDS[*]}) in $((SECONDS - started_at)) s for this run" >&2
}

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The optional OTLP exporter (cargo feature `otlp`) must keep compiling cleanly too.
cargo clippy --lib --features otlp -- -D warnings
# Alert and recording rules: syntax, then the promtool unit tests (every alert fires on a
# synthetic burn and stays silent on healthy series). CI sets REQUIRE_PROMTOOL=1 (.ci/run
# installs promtool); locally a missing promtool is reported loudly but does not fail the run.
if command -v promtool >/dev/null 2>&1; then
  promtool check rules deploy/prometheus/*.rules.yml
  promtool test rules deploy/prometheus/tests/*.yml
elif [ "${REQUIRE_PROMTOOL:-0}" = 1 ]; then
  echo "promtool is required (REQUIRE_PROMTOOL=1) but not installed" >&2
  exit 1
else
  printf '\n!!!!!! promtool not found: the Prometheus rules in deploy/prometheus were NOT checked.\n!!!!!! Install it (Debian: apt-get install prometheus) to run them; CI always does.\n\n' >&2
fi

# The deployment files (Dockerfile, Compose, Kubernetes, the generated PrometheusRule):
# hadolint, the Compose schema, kubernetes-validate and the CRD schemas. In CI (CI=true) a
# tool that cannot be installed fails the run; locally it is reported loudly.
bash scripts/check-deploy.sh

# The dependency audit: `cargo deny check advisories licenses bans sources` (deny.toml), offline
# against a local copy of the RustSec advisory database (docs/SECURITY.md, "Dependency audit").
# In CI a missing cargo-deny or advisory database fails the run; locally it is reported loudly.
bash scripts/check-deps.sh

if [ -z "${AGW_TEST_REDIS_URL:-}" ]; then
  probe=${AGW_TEST_REDIS_PROBE:-127.0.0.1:6379}
  if redis_answers "${probe%:*}" "${probe##*:}"; then
    echo "using the Redis that answers on $probe" >&2
  else
    echo "no Redis answers on $probe" >&2
    start_throwaway
  fi
fi

if [ -z "${AGW_TEST_REDIS_CLUSTER_URL:-}" ]; then
  start_cluster
else
  echo "using the Redis Cluster named by AGW_TEST_REDIS_CLUSTER_URL" >&2
fi

nextest_available() { cargo nextest --version >/dev/null 2>&1; }
use_nextest=0
if [ "${AGW_TEST_NO_NEXTEST:-0}" != 1 ]; then
  if ! nextest_available; then
    echo "cargo-nextest not found; installing it (cargo install --locked cargo-nextest)" >&2
    cargo install --locked cargo-nextest || true
  fi
  nextest_available && use_nextest=1
fi

if [ "$use_nextest" = 1 ]; then
  cargo nextest run --workspace --no-fail-fast
else
  printf '\n!!!!!! cargo-nextest unavailable: running the tests with cargo test instead.\n\n' >&2
  # .config/nextest.toml gives the limiter's exactness tests (binary `quotas`, names containing
  # `exactly` or `exact_across`) the machine to themselves; here they are listed from that
  # binary, skipped by their exact names in the main run, then run alone, one at a time.
  mapfile -t exact < <(cargo test --quiet --test quotas -- --list |
    sed -n 's/: test$//p' | grep -E 'exactly|exact_across')
  if [ "${#exact[@]}" -eq 0 ]; then
    echo "found none of the limiter's exactness tests in tests/quotas.rs" >&2
    exit 1
  fi
  # The chaos suite (tests/chaos.rs, own Redis and gateway processes) likewise runs alone.
  mapfile -t chaos < <(cargo test --quiet --test chaos -- --list | sed -n 's/: test$//p')
  if [ "${#chaos[@]}" -eq 0 ]; then
    echo "found none of the chaos scenarios in tests/chaos.rs" >&2
    exit 1
  fi
  skips=()
  for t in "${exact[@]}" "${chaos[@]}"; do skips+=(--skip "$t"); done
  status=0
  cargo test --workspace --no-fail-fast -- --exact "${skips[@]}" || status=$?
  cargo test --test quotas -- --exact --test-threads=1 "${exact[@]}" || status=$?
  cargo test --test chaos -- --exact --test-threads=1 "${chaos[@]}" || status=$?
  # The SDK checks below run only after the cargo tests passed, as they do under nextest.
  [ "$status" = 0 ] || exit "$status"
fi

# The Python SDK (sdk/python): ruff, mypy, its tests against a live gateway, python -m build.
bash scripts/check-sdk-python.sh

# The TypeScript SDK against live gateways on the simulator (issue #17).
bash scripts/check-sdk-typescript.sh

# The Rust SDK and the shared signing crate: their tests ran in the workspace above; cargo package.
bash scripts/check-sdk-rust.sh --package-only

# The official `openai` Python package against the gateway (tests/openai_sdk).
bash scripts/check-openai-sdk.sh
