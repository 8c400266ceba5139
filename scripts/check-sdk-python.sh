#!/usr/bin/env bash
# The Python SDK's checks (issue #17), run by scripts/test.sh:
# - ruff (lint and format) and mypy (strict) on sdk/python;
# - pytest: the SDK's tests against live gateways this script's build provides (the built-in
#   simulator, no CHUTES_API_KEY; a second gateway in front of the chutes-sim binary for a
#   stream slow enough to cancel), each on a free 127.0.0.1 port, state in memory;
# - python -m build: the sdist and the wheel, into target/sdk-check/python/dist (not published).
#
# The gateway binaries: `cargo build -p affine-gateway -p chutes-sim` (nearly a no-op after the
# suite's cargo tests), or AGW_GATEWAY_BIN (and AGW_CHUTES_SIM_BIN, default: beside it) to test
# a binary built elsewhere. Python packages come from PyPI, pinned
# (sdk/python/requirements-check.txt), into a virtualenv under target/sdk-check/python/. A
# tool that cannot be installed fails the run in CI (CI=true, or REQUIRE_SDK_CHECKS=1);
# elsewhere the script says loudly what it did not check and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$PWD/target/sdk-check/python
SDK=$PWD/sdk/python
REQS=$SDK/requirements-check.txt
mkdir -p "$WORK"
required=0
if [ "${CI:-}" = true ] || [ "${REQUIRE_SDK_CHECKS:-0}" = 1 ]; then required=1; fi

skip() {
  if [ "$required" = 1 ]; then
    echo "check-sdk-python: $1 (required in CI)" >&2
    exit 1
  fi
  printf '\n!!!!!! check-sdk-python: NOT checked: %s\n!!!!!! CI installs it and fails instead.\n\n' "$1" >&2
  exit 0
}

if [ -z "${AGW_GATEWAY_BIN:-}" ]; then
  cargo build --quiet -p affine-gateway -p chutes-sim --bin affine-gateway --bin chutes-sim
  export AGW_GATEWAY_BIN=$PWD/target/debug/affine-gateway
fi
export AGW_CHUTES_SIM_BIN=${AGW_CHUTES_SIM_BIN:-$(dirname "$AGW_GATEWAY_BIN")/chutes-sim}
for bin in "$AGW_GATEWAY_BIN" "$AGW_CHUTES_SIM_BIN"; do
  [ -x "$bin" ] || { echo "check-sdk-python: $bin is not an executable" >&2; exit 1; }
done

PYTHON=${PYTHON:-python3}
venv=$WORK/venv
stamp=$venv/.requirements
if [ -f "$stamp" ] && cmp -s "$stamp" "$REQS"; then
  :
elif command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -m venv --clear "$venv" >/dev/null 2>&1 &&
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"; then
  cp "$REQS" "$stamp"
else
  skip "could not install the pinned Python packages of sdk/python/requirements-check.txt"
fi
py=$venv/bin/python

# The package itself, as a user installs it (with its test extras, every version pinned).
"$py" -m pip uninstall --quiet --yes affine-reason >/dev/null 2>&1 || true
"$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation -c "$REQS" "$SDK[test]"
"$py" -m pip check >/dev/null

export PYTHONDONTWRITEBYTECODE=1 RUFF_CACHE_DIR=$WORK/ruff-cache
cd "$SDK"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy" --cache-dir "$WORK/mypy-cache"
echo "check-sdk-python: ruff and mypy (strict) clean"

"$py" -m pytest -q -p no:cacheprovider tests

rm -rf "$WORK/dist"
"$py" -m build --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log" >&2; exit 1; }
# The wheel must carry the typing marker (PEP 561) and the sdist the tests.
"$py" - "$WORK/dist" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path
dist = Path(sys.argv[1])
wheel = next(dist.glob("affine_reason-*.whl"))
sdist = next(dist.glob("affine_reason-*.tar.gz"))
names = zipfile.ZipFile(wheel).namelist()
assert "affine_reason/py.typed" in names, names
assert any(n.endswith("METADATA") for n in names)
members = tarfile.open(sdist).getnames()
assert any(m.endswith("tests/test_live.py") for m in members), members
print(f"check-sdk-python: built {wheel.name} and {sdist.name}")
PY
echo "check-sdk-python: every Python SDK check passed"
