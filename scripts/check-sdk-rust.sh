#!/usr/bin/env bash
# The Rust SDK (sdk/rust, crate `affine-reason`) and the shared signing crate (sdk/rust/auth,
# `affine-reason-auth`): their tests against a live gateway with the built-in simulator, then
# both crates packaged as they would be published (nothing is uploaded).
#
# The tests start the gateway in-process from the `affine_gateway` library on an ephemeral
# 127.0.0.1 port (no Chutes key, the embedded store), so no separate binary is needed; the
# gateway binary is still built, as every SDK check does, so this script works alone.
#
#   bash scripts/check-sdk-rust.sh              # tests + packages
#   bash scripts/check-sdk-rust.sh --package-only   # packages only (scripts/test.sh: the
#                                                   # workspace test run already ran the tests)
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=1
case "${1:-}" in
  --package-only) run_tests=0 ;;
  "") ;;
  *) echo "usage: $0 [--package-only]" >&2; exit 2 ;;
esac

if [ "$run_tests" = 1 ]; then
  cargo build --bin affine-gateway
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p affine-reason-auth -p affine-reason --no-fail-fast
  else
    if [ "${CI:-}" = true ]; then
      echo "cargo-nextest is required under CI=true" >&2
      exit 1
    fi
    printf '\n!!!!!! cargo-nextest unavailable: running the SDK tests with cargo test.\n\n' >&2
    cargo test -p affine-reason-auth -p affine-reason --no-fail-fast
  fi
fi

# Both crates in one invocation: cargo packages `affine-reason` against the just-packaged
# `affine-reason-auth` through a local registry overlay, as if the latter were on crates.io.
# Verification builds each package from its tarball, so a file missing from a package
# fails here.
cargo package -p affine-reason-auth -p affine-reason --allow-dirty --locked
for crate in affine-reason-auth affine-reason; do
  version=$(cargo metadata --format-version 1 --no-deps |
    python3 -c "import json,sys; print(next(p['version'] for p in json.load(sys.stdin)['packages'] if p['name']=='$crate'))")
  ls -l "target/package/$crate-$version.crate"
done
echo "check-sdk-rust: ok"
