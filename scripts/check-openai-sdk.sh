#!/usr/bin/env bash
# The gateway as the official `openai` Python package sees it: tests/openai_sdk (pytest) against
# the gateway binary with its built-in simulated upstream (see tests/openai_sdk/conftest.py).
#
# The packages are pinned below and installed in a venv under target/sdk-check/openai. When
# that install fails (e.g. offline), CI (CI=true) fails the run; elsewhere it is reported loudly
# and the check is skipped. AGW_GATEWAY_BIN runs a prebuilt gateway instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=3.60.0
PYTEST_VERSION=9.2.0
VENV=target/sdk-check/openai
STAMP="$VENV/.installed-openai-$OPENAI_VERSION-pytest-$PYTEST_VERSION"

skip_or_fail() {
  if [ "${CI:-}" = true ]; then
    echo "check-openai-sdk: $1" >&2
    exit 1
  fi
  printf '\n!!!!!! check-openai-sdk: %s\n!!!!!! The openai SDK checks (tests/openai_sdk) were NOT run.\n\n' "$1" >&2
  exit 0
}

if [ ! -f "$STAMP" ]; then
  command -v python3 >/dev/null 2>&1 || skip_or_fail "python3 not found"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || skip_or_fail "could not create a venv in $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "openai==$OPENAI_VERSION" "pytest==$PYTEST_VERSION" ||
    skip_or_fail "could not install openai==$OPENAI_VERSION and pytest==$PYTEST_VERSION"
  touch "$STAMP"
fi

if [ -z "${AGW_GATEWAY_BIN:-}" ]; then
  cargo build --quiet --bin affine-gateway
fi

exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/openai_sdk
