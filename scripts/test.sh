#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Prometheus rules, then every test of the workspace.
# Needs Redis on 127.0.0.1:6379 (tests use their own key prefixes and never flush).
set -euo pipefail
cd "$(dirname "$0")/.."
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
cargo nextest run --workspace --no-fail-fast
