#!/usr/bin/env bash
# signals_cost.sh -- what the detection signals cost a first backup (docs/DETECTION.md).
#
# Usage: benches/signals_cost.sh [-h]
# Env:   SIZE_MB=1024 FILES=50000 RUNS=5 WORK=/tmp/kura-signals-bench
#        KURA=<repo>/target/release/kura  CORPUS_GEN=<repo>/../shared/bench/make_corpus.py
# Needs: bash, python3, hyperfine.
# One hyperfine run times the first backup of the bench corpus into a fresh
# repository with signals on (the default) and off (`--no-signals`), interleaved,
# RUNS times each; then the second backup of the mutated tree (signals compare
# with the parent), on and off. The goal: signals cost at most 5 % of the time.
# Output: Markdown on stdout and in $WORK/results.md.
set -euo pipefail

die() { echo "signals_cost.sh: error: $*" >&2; exit 1; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0; }
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
CORPUS_GEN=${CORPUS_GEN:-$HERE/../../shared/bench/make_corpus.py}
SIZE_MB=${SIZE_MB:-1024} FILES=${FILES:-50000} RUNS=${RUNS:-5}
WORK=${WORK:-/tmp/kura-signals-bench} KURA=${KURA:-$ROOT/target/release/kura}
export KURA_PASSWORD=bench-password
command -v hyperfine >/dev/null || die "hyperfine is missing (sudo apt-get install -y hyperfine)"
command -v python3 >/dev/null || die "python3 is missing"
[[ -x $KURA ]] || die "no kura binary at $KURA (cargo build --release, or set KURA=...)"
[[ -f $CORPUS_GEN ]] || die "corpus generator not found: $CORPUS_GEN (set CORPUS_GEN=...)"

mkdir -p "$WORK"
CORPUS=$WORK/corpus-$SIZE_MB-$FILES
if [[ ! -d $CORPUS ]]; then
  python3 "$CORPUS_GEN" "$CORPUS.tmp" --size-mb "$SIZE_MB" --files "$FILES" >/dev/null
  mv "$CORPUS.tmp" "$CORPUS"
fi

# First backup: a fresh repository each run.
hyperfine --runs "$RUNS" --export-markdown "$WORK/first.md" \
  --prepare "rm -rf $WORK/repo && $KURA init --repo $WORK/repo >/dev/null" \
  -n "first backup, signals on" "$KURA --repo $WORK/repo backup -q $CORPUS" \
  -n "first backup, signals off" "$KURA --repo $WORK/repo backup -q --no-signals $CORPUS"

# Second backup of the mutated tree: a repository holding v1 of the same path,
# copied fresh each run, so that v1's snapshot is the parent.
V2=$WORK/v2
rm -rf "$V2" && cp -a "$CORPUS" "$V2"
rm -rf "$WORK/base" && "$KURA" init --repo "$WORK/base" >/dev/null
"$KURA" --repo "$WORK/base" backup -q "$V2" >/dev/null
python3 "$CORPUS_GEN" --mutate "$V2" --seed 2 >/dev/null
hyperfine --runs "$RUNS" --export-markdown "$WORK/second.md" \
  --prepare "rm -rf $WORK/repo2 && cp -a $WORK/base $WORK/repo2" \
  -n "mutated backup, signals on" "$KURA --repo $WORK/repo2 backup -q $V2" \
  -n "mutated backup, signals off" "$KURA --repo $WORK/repo2 backup -q --no-signals $V2"

{
  echo "## Signal cost ($(date -u +%Y-%m-%d), $("$KURA" --version), corpus $SIZE_MB MB / $FILES files, $(nproc) cores)"
  echo; cat "$WORK/first.md"; echo; cat "$WORK/second.md"
} | tee "$WORK/results.md"
