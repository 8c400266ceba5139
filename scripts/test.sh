#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# Needs Redis on 127.0.0.1:6379 (tests use their own key prefixes and never flush).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo nextest run --workspace --no-fail-fast
