#!/usr/bin/env bash
# LiteLLM's proxy as the reference gateway: the same upstream behind `litellm --config`, with
# default settings, measured by loadtests/run.sh --litellm at the same rates as the gateway.
#
#   loadtests/litellm.sh install                   # litellm[proxy] from PyPI into target/tools/litellm-venv
#   loadtests/litellm.sh serve WHOLE_URL [STREAM_URL]   # run it in the foreground (port printed)
#
# run.sh sources this file and calls litellm_start / litellm_stop. The generated config has
# one model per upstream answer kind (with nginx, whole and streamed answers are on two
# ports): `bench` (whole answers) and `bench-stream`, both `openai/<model>` at the upstream's
# /v1 with a dummy key. Nothing else is set: no database, no callbacks, one worker (LiteLLM's
# defaults), except a master key (a random one per start, in LITELLM_MASTER_KEY): LiteLLM
# refuses to start without one, and callers present it as a bearer token, as they present the
# gateway's. LITELLM_LOCAL_MODEL_COST_MAP=True only keeps it from fetching its price list
# from the internet at start (this machine has no route there).

LITELLM_VENV=${LITELLM_VENV:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/tools/litellm-venv"}
LITELLM_PID=""
LITELLM_BASE=""
LITELLM_VERSION=""
# The header callers send (`authorization: Bearer <master key>`), set by litellm_start.
LITELLM_AUTH=""
LITELLM_BODY='{"model":"bench","messages":[{"role":"user","content":"2+2?"}],"max_tokens":64'
LITELLM_STREAM_BODY='{"model":"bench-stream","messages":[{"role":"user","content":"2+2?"}],"max_tokens":64'

litellm_install() {
    if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
        echo "== installing litellm[proxy] into $LITELLM_VENV"
        python3 -m venv "$LITELLM_VENV" && "$LITELLM_VENV/bin/pip" install -q 'litellm[proxy]'
    fi
}

# litellm_config WHOLE_URL STREAM_URL: the config file's text.
litellm_config() {
    cat <<YAML
model_list:
  - model_name: bench
    litellm_params:
      model: openai/${LITELLM_UPSTREAM_MODEL:-affine-champ/Affine-Reasoner-32B}
      api_base: $1
      api_key: bench
  - model_name: bench-stream
    litellm_params:
      model: openai/${LITELLM_UPSTREAM_MODEL:-affine-champ/Affine-Reasoner-32B}
      api_base: $2
      api_key: bench
YAML
}

# litellm_start WHOLE_URL [STREAM_URL]: installs if needed, starts the proxy on a free
# loopback port and waits (at most 90 s: it imports a lot) for it to answer; sets
# LITELLM_PID, LITELLM_BASE, LITELLM_VERSION.
litellm_start() {
    local whole=$1 stream=${2:-$1} dir port
    litellm_install || return 1
    dir=$(mktemp -d "${TMPDIR:-/tmp}/litellm.XXXXXX")
    litellm_config "$whole" "$stream" >"$dir/config.yaml"
    port=$((20000 + RANDOM % 10000))
    local key
    key="sk-bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    LITELLM_AUTH="authorization: Bearer $key"
    echo "== starting LiteLLM proxy on 127.0.0.1:$port"
    LITELLM_MASTER_KEY=$key LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM_VENV/bin/litellm" --config "$dir/config.yaml" \
        --host 127.0.0.1 --port "$port" >"$dir/litellm.log" 2>&1 &
    LITELLM_PID=$!
    LITELLM_BASE="http://127.0.0.1:$port"
    for _ in $(seq 1 900); do
        if ! kill -0 "$LITELLM_PID" 2>/dev/null; then
            cat "$dir/litellm.log" >&2
            return 1
        fi
        # A real completion, so the first measured request does not pay for lazy set-up.
        if curl -sf -o /dev/null --max-time 5 -H 'content-type: application/json' -H "$LITELLM_AUTH" \
            -d "$LITELLM_BODY}" "$LITELLM_BASE/v1/chat/completions"; then
            LITELLM_VERSION=$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version:/ {print $2}')
            return 0
        fi
        sleep 0.1
    done
    echo "litellm.sh: LiteLLM did not answer within 90 s:" >&2
    tail -n 20 "$dir/litellm.log" >&2
    return 1
}

litellm_stop() {
    if [ -n "$LITELLM_PID" ] && kill -0 "$LITELLM_PID" 2>/dev/null; then
        kill "$LITELLM_PID" 2>/dev/null || true
        wait "$LITELLM_PID" 2>/dev/null || true
    fi
    LITELLM_PID=""
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
        install) litellm_install ;;
        serve)
            trap litellm_stop EXIT
            litellm_start "${2:?serve needs the upstream /v1 URL}" "${3:-$2}"
            echo "LiteLLM proxy at $LITELLM_BASE (version $LITELLM_VERSION); Ctrl-C stops it"
            wait "$LITELLM_PID"
            ;;
        *) sed -n '5,6p' "$0" | sed 's/^# *//'; exit 2 ;;
    esac
fi
