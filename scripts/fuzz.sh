#!/usr/bin/env bash
# Long fuzzing runs, outside CI (docs/FUZZING.md). CI only replays the committed
# corpus and regressions (tests/it/fuzz_replay.rs).
#
#   scripts/fuzz.sh seed            (re)write the seed corpus from real objects
#   scripts/fuzz.sh run [SECS] [T]  fuzz each target (or T) for SECS seconds (600)
#   scripts/fuzz.sh cmin            minimize the corpus before committing it
#
# cargo-fuzz needs nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=(repository_object config plan control_line)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
case "${1:-run}" in
  seed)
    cargo test --test it write_fuzz_seeds -- --ignored --exact fuzz_replay::write_fuzz_seeds
    ;;
  run)
    secs="${2:-600}"
    if [ -n "${3:-}" ]; then list=("$3"); else list=("${TARGETS[@]}"); fi
    for t in "${list[@]}"; do
      mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
      echo "== fuzzing $t for $secs s"
      # New crashes land in fuzz/artifacts/$t; each becomes a regression case.
      cargo fuzz run --fuzz-dir fuzz --sanitizer "${KURA_FUZZ_SANITIZER:-none}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=262144 -print_final_stats=1
    done
    ;;
  cmin)
    for t in "${TARGETS[@]}"; do
      cargo fuzz cmin --fuzz-dir fuzz "$t" "fuzz/corpus/$t"
    done
    ;;
  *)
    echo "usage: $0 seed | run [SECS] [TARGET] | cmin" >&2
    exit 2
    ;;
esac
