#!/usr/bin/env bash
# signals_cost.sh -- what the detection signals cost a backup (docs/DETECTION.md).
#
# Usage: benches/signals_cost.sh [-h]
# Env:   SIZE_MB=1024 FILES=50000 RUNS=8 WORK=/tmp/kura-signals-bench
#        KURA=<repo>/target/release/kura  CORPUS_GEN=<repo>/benches/lib/make_corpus.py
# Needs: bash, python3, /usr/bin/time.
# In one run, RUNS times each and interleaved (on, off, on, off, ...), so that load
# from elsewhere hits both alike: the first backup of the bench corpus into a fresh
# repository with signals on (the default) and off (`--no-signals`); then the
# backup of the mutated tree into a copy of a repository holding v1 (signals
# compare with the parent). Reports median wall time and median CPU (user + sys).
# The goal: signals cost at most 5 % of the first backup.
# Output: Markdown on stdout and in $WORK/results.md.
set -euo pipefail

die() { echo "signals_cost.sh: error: $*" >&2; exit 1; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0; }
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
CORPUS_GEN=${CORPUS_GEN:-$HERE/lib/make_corpus.py}
SIZE_MB=${SIZE_MB:-1024} FILES=${FILES:-50000} RUNS=${RUNS:-8}
WORK=${WORK:-/tmp/kura-signals-bench} KURA=${KURA:-$ROOT/target/release/kura}
export KURA_PASSWORD=bench-password
command -v python3 >/dev/null || die "python3 is missing"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (sudo apt-get install -y time)"
[[ -x $KURA ]] || die "no kura binary at $KURA (cargo build --release, or set KURA=...)"
[[ -f $CORPUS_GEN ]] || die "corpus generator not found: $CORPUS_GEN (set CORPUS_GEN=...)"

mkdir -p "$WORK"
CORPUS=$WORK/corpus-$SIZE_MB-$FILES
if [[ ! -d $CORPUS ]]; then
  python3 "$CORPUS_GEN" "$CORPUS.tmp" --size-mb "$SIZE_MB" --files "$FILES" >/dev/null
  mv "$CORPUS.tmp" "$CORPUS"
fi
# The mutated tree at a path of its own, and a repository holding its v1.
V2=$WORK/v2
rm -rf "$V2" "$WORK/base" && cp -a "$CORPUS" "$V2"
"$KURA" init --repo "$WORK/base" >/dev/null
"$KURA" --repo "$WORK/base" backup -q "$V2" >/dev/null
python3 "$CORPUS_GEN" --mutate "$V2" --seed 2 >/dev/null

TIMES=$WORK/times.txt
: >"$TIMES"
for ((i = 1; i <= RUNS; i++)); do
  for mode in on off; do
    flag=(); [[ $mode == off ]] && flag=(--no-signals)
    rm -rf "$WORK/repo" && "$KURA" init --repo "$WORK/repo" >/dev/null
    /usr/bin/time -a -o "$TIMES" -f "first $mode %e %U %S" "$KURA" --repo "$WORK/repo" backup -q "${flag[@]}" "$CORPUS" >/dev/null
    rm -rf "$WORK/repo2" && cp -a "$WORK/base" "$WORK/repo2"
    /usr/bin/time -a -o "$TIMES" -f "mutated $mode %e %U %S" "$KURA" --repo "$WORK/repo2" backup -q "${flag[@]}" "$V2" >/dev/null
  done
done

python3 - "$TIMES" "$SIZE_MB" "$FILES" "$("$KURA" --version)" "$(nproc)" <<'PY' | tee "$WORK/results.md"
import statistics as st, sys, datetime
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"## Signal cost ({datetime.date.today()}, {sys.argv[4]}, corpus {sys.argv[2]} MB / {sys.argv[3]} files, {sys.argv[5]} cores)\n")
print("| backup | signals | runs | wall median [s] | CPU median [s] | CPU vs off |")
print("|---|---|---:|---:|---:|---:|")
for phase in ("first", "mutated"):
    cpu = {}
    for mode in ("on", "off"):
        r = [x for x in rows if x[0] == phase and x[1] == mode]
        wall = st.median(float(x[2]) for x in r)
        cpu[mode] = st.median(float(x[3]) + float(x[4]) for x in r)
        cpu_rel = "" if mode == "off" else f"{(cpu['on'] / st.median(float(x[3]) + float(x[4]) for x in rows if x[0] == phase and x[1] == 'off') - 1) * 100:+.1f} %"
        print(f"| {phase} | {mode} | {len(r)} | {wall:.3f} | {cpu[mode]:.3f} | {cpu_rel} |")
PY
