#!/usr/bin/env bash
# The TypeScript SDK's checks (issue #17), run by scripts/test.sh after the cargo tests:
# - `npm ci` of sdk/typescript's pinned dependencies (package-lock.json) into its node_modules;
# - the generated OpenAPI types (src/generated/openapi.ts) against openapi/openapi.json: no drift;
# - build (ESM + .d.ts into dist/), typecheck of the library and of the tests;
# - the tests (`node --test`) against live gateways started on free 127.0.0.1 ports: one on the
#   built-in simulator (no CHUTES_API_KEY), one in front of a paced chutes-sim (cancelled
#   streams), both built here with `cargo build` (a no-op after the suite's cargo tests);
# - `npm pack` into target/sdk-check/typescript/ (nothing is published).
# Without node/npm, or when the dependencies cannot be installed, it fails under CI=true (or
# REQUIRE_SDK_CHECKS=1) and elsewhere says so loudly and skips. AGW_GATEWAY_BIN and
# AGW_CHUTES_SIM_BIN point it at prebuilt binaries instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
pkg=sdk/typescript
out=target/sdk-check/typescript
mkdir -p "$out"

required=0
if [ "${CI:-}" = true ] || [ "${REQUIRE_SDK_CHECKS:-0}" = 1 ]; then required=1; fi
skip() {
  if [ "$required" = 1 ]; then
    echo "check-sdk-typescript: $1 (required in CI)" >&2
    exit 1
  fi
  printf '\n!!!!!! check-sdk-typescript: %s; the TypeScript SDK was NOT checked.\n\n' "$1" >&2
  exit 0
}

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip "node and npm are not installed"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || skip "node $major is older than 20"

if [ -z "${AGW_GATEWAY_BIN:-}" ] || [ -z "${AGW_CHUTES_SIM_BIN:-}" ]; then
  cargo build --quiet --locked -p affine-gateway -p chutes-sim --bin affine-gateway --bin chutes-sim
  export AGW_GATEWAY_BIN=${AGW_GATEWAY_BIN:-$root/target/debug/affine-gateway}
  export AGW_CHUTES_SIM_BIN=${AGW_CHUTES_SIM_BIN:-$root/target/debug/chutes-sim}
fi

cd "$pkg"
# node_modules is reinstalled only when package-lock.json changed since the last install.
stamp=node_modules/.agw-installed-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  echo "check-sdk-typescript: node_modules matches package-lock.json"
elif npm ci --no-audit --no-fund --loglevel=error >"$root/$out/npm-ci.log" 2>&1; then
  cp package-lock.json "$stamp"
else
  cat "$root/$out/npm-ci.log" >&2
  skip "npm ci failed (see above)"
fi
npm run --silent check:generated
npm run --silent typecheck # builds dist/ first: the tests import the built package by name
echo "check-sdk-typescript: typecheck clean"
npm run --silent build:test
node scripts/run-tests.mjs
npm pack --silent --pack-destination "$root/$out" >"$root/$out/pack.log"
echo "check-sdk-typescript: packed $(tail -n1 "$root/$out/pack.log") into $out/"
