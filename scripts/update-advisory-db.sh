#!/usr/bin/env bash
# Makes the pruned RustSec advisory snapshot that scripts/check-deps.sh audits Cargo.lock
# against on machines that cannot reach the advisory database's git host.
#
#   scripts/update-advisory-db.sh SRC [DEST]
#
# SRC: a git clone of the RustSec advisory-db (bare or not); its HEAD is read, nothing is
# checked out. DEST: where the snapshot goes (default: $AGW_ADVISORY_SNAPSHOT, else
# ../shared/advisory-db beside the repository, where scripts/check-deps.sh looks for it).
#
# The snapshot holds crates/<name>/*.md for every crates.io crate named in Cargo.lock that has
# advisories, the database's LICENSE.txt (CC0-1.0), and MANIFEST: the source commit and its
# date, and every crate name of Cargo.lock the snapshot was cut for, with or without
# advisories. scripts/check-deps.sh refuses a snapshot whose MANIFEST lacks a crate that
# Cargo.lock names (a new dependency needs a refresh) and warns when the source commit is older
# than AGW_ADVISORY_MAX_AGE_DAYS (90).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 SRC [DEST]  (SRC: a git clone of the RustSec advisory-db)" >&2
  exit 2
fi
src=$1
dest=${2:-${AGW_ADVISORY_SNAPSHOT:-../shared/advisory-db}}

if ! commit=$(git -C "$src" rev-parse --verify --quiet 'HEAD^{commit}'); then
  echo "$src is not a git clone of the advisory database (no HEAD commit)" >&2
  exit 1
fi
date=$(git -C "$src" show -s --format=%cI "$commit")
if ! git -C "$src" cat-file -e "$commit:crates" 2>/dev/null; then
  echo "$src has no crates/ directory at $commit: not the RustSec advisory-db layout" >&2
  exit 1
fi

mapfile -t wanted < <(awk -f scripts/lib/registry-crates.awk Cargo.lock | LC_ALL=C sort -u)
mapfile -t in_db < <(git -C "$src" ls-tree -d --name-only "$commit" crates/ | sed 's#^crates/##' | LC_ALL=C sort -u)
mapfile -t hits < <(LC_ALL=C comm -12 <(printf '%s\n' "${wanted[@]}") <(printf '%s\n' "${in_db[@]}"))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agw-advisory-db.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
paths=(LICENSE.txt)
for name in "${hits[@]}"; do paths+=("crates/$name"); done
git -C "$src" archive --format=tar "$commit" -- "${paths[@]}" | tar -x -C "$tmp"
advisories=$(find "$tmp/crates" -name '*.md' | wc -l)

{
  echo "# Pruned RustSec advisory-db snapshot for this repository's Cargo.lock."
  echo "# Made by scripts/update-advisory-db.sh; read by scripts/check-deps.sh. Do not edit."
  echo "source_commit $commit"
  echo "source_date $date"
  echo "made $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "advisories $advisories"
  echo "# Every crates.io crate of Cargo.lock when the snapshot was made, with or without advisories:"
  for name in "${wanted[@]}"; do echo "crate $name"; done
} >"$tmp/MANIFEST"

# Replaced whole, so a reader never sees half of the old snapshot and half of the new one.
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"
cp -r "$tmp" "$dest.new"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "advisory snapshot at $dest: $advisories advisories for ${#hits[@]} of ${#wanted[@]} crates," \
  "from $commit ($date), $(du -sh "$dest" | cut -f1)" >&2
