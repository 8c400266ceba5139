#!/usr/bin/env bash
# The dependency audit (issue #19), run by scripts/test.sh: `cargo deny check advisories
# licenses bans sources` with the policy in deny.toml, offline. docs/SECURITY.md ("Dependency
# audit") explains the policy and how to refresh the advisory data.
#
# cargo-deny: the pinned version (scripts/install-cargo-deny.sh) from PATH, else installed into
# target/deps-check/bin. .ci/run installs it beforehand.
#
# The RustSec advisory database cannot be fetched here (its git host is out of reach), so it
# is taken from the first of:
#   1. AGW_ADVISORY_DB: a git clone of the advisory-db, or a pruned snapshot;
#   2. AGW_ADVISORY_MIRROR (default /work/.mirror/rustsec+advisory-db/repo): a local git mirror
#      of the whole database, preferred when it is there;
#   3. AGW_ADVISORY_SNAPSHOT (default ../shared/advisory-db, beside the repository): the pruned
#      snapshot made by scripts/update-advisory-db.sh.
# The advisories of Cargo.lock's crates are laid out under target/deps-check/advisory-dbs as
# the local git repository cargo-deny expects (again only when the source or the crate list
# changed), and cargo-deny runs with --offline.
# - A snapshot that was not cut for every crates.io crate of Cargo.lock (its MANIFEST) fails
#   the check: a new dependency needs a refresh, or its advisories would go unseen.
# - Data older than AGW_ADVISORY_MAX_AGE_DAYS (default 90) is reported loudly.
# - An `ignore` entry in deny.toml whose `review-by:` date has passed fails the check.
#
# In CI (CI=true, or REQUIRE_DEPS_CHECKS=1) a missing cargo-deny fails the run; a missing
# advisory database is reported loudly and fails only with REQUIRE_ADVISORY_DB=1 (a fresh
# machine has none and cannot fetch one); elsewhere the script says loudly what it did not check.
# AGW_DENY_GRAPH=1 prints each finding's dependency path (hidden by default: the duplicate
# warnings would fill the log).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
WORK=target/deps-check
MAX_AGE_DAYS=${AGW_ADVISORY_MAX_AGE_DAYS:-90}
MIRROR=${AGW_ADVISORY_MIRROR:-/work/.mirror/rustsec+advisory-db/repo}
SNAPSHOT=${AGW_ADVISORY_SNAPSHOT:-../shared/advisory-db}
# cargo-deny keeps each advisory database in <db-path>/<last segment of its URL>-<xxhash64 of
# the URL>; this is that name for its default, the RustSec advisory-db (deny.toml sets no
# db-urls). A cargo-deny that names it differently fails below with "failed to get HEAD
# timestamp" and the path it expected.
DB_DIR_NAME=advisory-db-3157b0e258782691
required=0
if [ "${CI:-}" = true ] || [ "${REQUIRE_DEPS_CHECKS:-0}" = 1 ]; then required=1; fi
mkdir -p "$WORK"

loud() { printf '\n!!!!!! %s\n\n' "$1" >&2; }
# A tool or the database is missing: fail in CI, else say so and go on without it.
missing() {
  if [ "$required" = 1 ]; then
    echo "check-deps: $1 (required in CI)" >&2
    exit 1
  fi
  loud "check-deps: $1: NOT checked."
}

# --- cargo-deny ---------------------------------------------------------------------------
pinned=$(sed -n 's/^VERSION=//p' scripts/install-cargo-deny.sh)
if [ "$(cargo-deny --version 2>/dev/null)" = "cargo-deny $pinned" ]; then
  deny=cargo-deny
elif deny=$(bash scripts/install-cargo-deny.sh "$WORK/bin"); then
  :
else
  missing "cargo-deny $pinned could not be installed (scripts/install-cargo-deny.sh)"
  exit 0
fi

# --- review-by dates of accepted advisories -----------------------------------------------
# Every `id = "..."` in [advisories] must follow a comment with `review-by: YYYY-MM-DD` that
# is not in the past.
if ! awk -v today="$(date -u +%F)" '
  /^\[/ { in_adv = ($0 == "[advisories]") }
  in_adv && match($0, /review-by: *[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]/) {
    review = substr($0, RSTART + RLENGTH - 10, 10)
  }
  in_adv && match($0, /id = "[^"]+"/) {
    id = substr($0, RSTART + 6, RLENGTH - 7)
    if (review == "") { print "deny.toml: ignored advisory " id " has no review-by: date"; bad = 1 }
    else if (review < today) { print "deny.toml: the review-by date of ignored advisory " id " (" review ") has passed: check it again, then fix, or extend the date with a reason"; bad = 1 }
    review = ""
  }
  END { exit bad }' deny.toml >&2; then
  exit 1
fi

# --- crate sources and index entries, for --offline ---------------------------------------
# cargo-deny reads every package's manifest, of every target (a no-op once they are cached),
# and judges `yanked` from the local index cache, which a locked build never refreshes: a dry
# run of `cargo update` re-reads the index entry of every crate in Cargo.lock (~4 s), and
# writes nothing.
cargo fetch --locked --quiet || echo "check-deps: cargo fetch failed; using the crates already cached" >&2
cargo update --dry-run --quiet 2>/dev/null ||
  loud "check-deps: could not refresh the crates.io index cache: yanked versions are judged from the cached index."

# --- the advisory database ------------------------------------------------------------------
lock_crates() { awk -f scripts/lib/registry-crates.awk Cargo.lock | LC_ALL=C sort -u; }
# Crates of Cargo.lock that the snapshot in $1 was not cut for.
uncovered() { LC_ALL=C comm -23 <(lock_crates) <(sed -n 's/^crate //p' "$1/MANIFEST" | LC_ALL=C sort -u); }
is_git() { git -C "$1" rev-parse --verify --quiet 'HEAD^{commit}' >/dev/null 2>&1; }

db_kind="" db_src=""
if [ -n "${AGW_ADVISORY_DB:-}" ]; then
  db_src=$AGW_ADVISORY_DB
  if is_git "$db_src"; then db_kind=git
  elif [ -f "$db_src/MANIFEST" ]; then db_kind=snapshot
  else
    echo "check-deps: AGW_ADVISORY_DB=$db_src is neither a git clone of the advisory-db nor a snapshot with a MANIFEST" >&2
    exit 1
  fi
elif is_git "$MIRROR"; then
  db_kind=git db_src=$MIRROR
elif [ -f "$SNAPSHOT/MANIFEST" ]; then
  db_kind=snapshot db_src=$SNAPSHOT
fi

checks=(licenses bans sources)
db_root=$PWD/$WORK/advisory-dbs
if [ -z "$db_kind" ]; then
  # A fresh machine has no copy of the database and cannot fetch one (its git host is out of
  # reach), and the README's test command must still pass there: licenses, bans and sources
  # are checked, and the missing advisories are reported loudly. REQUIRE_ADVISORY_DB=1 makes
  # that a failure (for a machine that is meant to have the data).
  what="no RustSec advisory database (AGW_ADVISORY_DB, the mirror at $MIRROR, or a snapshot at $SNAPSHOT; see docs/SECURITY.md): advisories"
  if [ "${REQUIRE_ADVISORY_DB:-0}" = 1 ]; then
    echo "check-deps: $what (REQUIRE_ADVISORY_DB=1)" >&2
    exit 1
  fi
  loud "check-deps: $what NOT checked."
else
  db=$db_root/$DB_DIR_NAME
  if [ "$db_kind" = git ]; then
    commit=$(git -C "$db_src" rev-parse 'HEAD^{commit}')
    date=$(git -C "$db_src" show -s --format=%cI "$commit")
    # Only the crates of Cargo.lock: the same findings as the whole database, a tenth of the
    # files to lay out (file I/O dominates on a busy machine).
    mapfile -t hits < <(LC_ALL=C comm -12 <(lock_crates) \
      <(git -C "$db_src" ls-tree -d --name-only "$commit" crates/ | sed 's#^crates/##' | LC_ALL=C sort -u))
    stamp="git $commit $(printf '%s\n' "${hits[@]}" | sha256sum | cut -c1-16)"
    # The pruned snapshot is what fresh machines use: say so when it lags behind Cargo.lock.
    if [ -f "$SNAPSHOT/MANIFEST" ] && [ -n "$(uncovered "$SNAPSHOT")" ]; then
      loud "check-deps: the advisory snapshot at $SNAPSHOT lacks crates of Cargo.lock ($(uncovered "$SNAPSHOT" | tr '\n' ' ')): machines without the mirror will fail; refresh it with scripts/update-advisory-db.sh."
    fi
  else
    commit=$(sed -n 's/^source_commit //p' "$db_src/MANIFEST")
    date=$(sed -n 's/^source_date //p' "$db_src/MANIFEST")
    if [ -n "$(uncovered "$db_src")" ]; then
      echo "check-deps: Cargo.lock names crates the advisory snapshot at $db_src was not cut for:" >&2
      uncovered "$db_src" | sed 's/^/  /' >&2
      echo "refresh it from a clone of the RustSec advisory-db: scripts/update-advisory-db.sh SRC [DEST] (docs/SECURITY.md)" >&2
      exit 1
    fi
    stamp="snapshot $(sha256sum "$db_src/MANIFEST" | cut -c1-16)"
  fi
  # Laid out again only when the source or Cargo.lock's crate list changed.
  if [ "$(cat "$db_root/.source" 2>/dev/null)" != "$stamp" ] || ! is_git "$db"; then
    rm -rf "$db" "$db_root/.source"
    mkdir -p "$db/crates"
    if [ "$db_kind" = git ]; then
      if [ "${#hits[@]}" -gt 0 ]; then
        git -C "$db_src" archive --format=tar "$commit" -- "${hits[@]/#/crates/}" | tar -x -C "$db"
      fi
    else
      cp -r "$db_src/crates/." "$db/crates/"
    fi
    # cargo-deny opens the database as a git repository (it reads HEAD's date); this one is
    # made now, so cargo-deny's own staleness limit never trips and the age is judged below.
    git -C "$db" init -q
    git -C "$db" add -A
    GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date git -C "$db" -c user.name=check-deps \
      -c user.email=check-deps@localhost -c commit.gpgsign=false commit -q --no-verify \
      --allow-empty -m "RustSec advisory-db $commit"
    echo "$stamp" >"$db_root/.source"
  fi
  age_days=$(( ($(date -u +%s) - $(date -u -d "$date" +%s)) / 86400 ))
  echo "check-deps: advisories from $db_kind $db_src at ${commit:0:12} ($date, $age_days days old," \
    "$(find "$db/crates" -name '*.md' | wc -l) advisories)" >&2
  if [ "$age_days" -gt "$MAX_AGE_DAYS" ]; then
    loud "check-deps: the advisory data is $age_days days old (more than AGW_ADVISORY_MAX_AGE_DAYS=$MAX_AGE_DAYS): advisories published since $date are not checked. Refresh it (docs/SECURITY.md, \"Dependency audit\")."
  fi
  checks=(advisories "${checks[@]}")
fi

# --- the audit --------------------------------------------------------------------------------
graph=(--hide-inclusion-graph)
if [ "${AGW_DENY_GRAPH:-0}" = 1 ]; then graph=(); fi
status=0
AGW_DENY_DB_ROOT=$db_root "$deny" --offline --locked check "${graph[@]}" "${checks[@]}" || status=$?
echo "check-deps: cargo deny check ${checks[*]}: $([ "$status" = 0 ] && echo ok || echo "FAILED (exit $status)") in $((SECONDS - started)) s" >&2
exit "$status"
