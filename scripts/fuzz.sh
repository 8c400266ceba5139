#!/usr/bin/env bash
# Fuzzing (docs/SECURITY.md, "Fuzzing").
#
#   bash scripts/fuzz.sh                         the short run, on stable: replays the committed
#                                                corpus and crashes and runs the bounded property
#                                                tests (tests/fuzz_regressions.rs; CI runs it with
#                                                every test run)
#   bash scripts/fuzz.sh --long SECONDS [TARGET...]
#                                                by hand, on nightly: cargo-fuzz runs each TARGET
#                                                (default: all) for SECONDS, one at a time, on one
#                                                core under nice, then minimises its corpus
#                                                (cmin, then at most 150 KiB of it)
#   bash scripts/fuzz.sh --list                  the targets
#
# Needs, for --long: a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz --locked). Findings land in fuzz/artifacts/TARGET/: fix the bug,
# keep the file (the replay test then runs it for good) and commit both. The libFuzzer log of
# each run is kept in fuzz/logs/TARGET.log (not committed); its final `#N` and `stat::` lines
# are what docs/SECURITY.md records.
set -euo pipefail
cd "$(dirname "$0")/.."

# Built without a sanitizer (the code is safe Rust; AddressSanitizer's cost goes to executions
# instead) but with debug assertions, so integer overflow panics as a finding.
FUZZ_FLAGS=(--sanitizer none --debug-assertions)

targets() {
  sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^affine-gateway-fuzz$'
}

case "${1:-}" in
  "")
    exec cargo nextest run --test fuzz_regressions
    ;;
  --list)
    targets
    ;;
  --long)
    secs=${2:?usage: scripts/fuzz.sh --long SECONDS [TARGET...]}
    shift 2
    if [ "$#" -gt 0 ]; then list=("$@"); else mapfile -t list < <(targets); fi
    mkdir -p fuzz/logs
    cd fuzz
    nice -n 10 cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
    for t in "${list[@]}"; do
      echo "== $t: $secs s" >&2
      mkdir -p "corpus/$t"
      status=0
      # -jobs=1 runs one worker that logs to fuzz-0.log; it is moved to logs/ afterwards.
      nice -n 10 cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" -- \
        -max_total_time="$secs" -jobs=1 -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >/dev/null 2>&1 || status=$?
      mv -f fuzz-0.log "logs/$t.log" 2>/dev/null || true
      grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)|^stat::|^==[0-9]+== ERROR|panicked at' "logs/$t.log" | tail -n 6 >&2 || true
      if [ "$status" != 0 ]; then
        echo "!! $t stopped with status $status: see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
      fi
      nice -n 10 cargo +nightly fuzz cmin "${FUZZ_FLAGS[@]}" "$t" >/dev/null 2>&1 ||
        echo "!! cmin of $t failed" >&2
      # The corpus is committed: past 150 KiB the biggest inputs (the least coverage per byte)
      # are dropped, so all targets together stay under 2 MB.
      find "corpus/$t" -type f -printf '%s %p\n' | sort -n |
        awk '{ s += $1; if (s > 153600) print $2 }' | xargs -r rm -f
      echo "   corpus: $(find "corpus/$t" -type f | wc -l) files, $(du -sh "corpus/$t" | cut -f1)" >&2
    done
    ;;
  *)
    echo "usage: scripts/fuzz.sh [--long SECONDS [TARGET...] | --list]" >&2
    exit 2
    ;;
esac
