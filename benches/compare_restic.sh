#!/usr/bin/env bash
# compare_restic.sh -- side-by-side benchmark of kura vs restic on one corpus.
#
# Usage: benches/compare_restic.sh [--only kura|restic] [--install] [-h]
# Env:   SIZE_MB=1024 FILES=50000 RUNS=3 WORK=/tmp/kura-bench
#        KURA=<repo>/target/release/kura  CORPUS_GEN=<repo>/benches/lib/make_corpus.py
#        TIMEOUT=7200 (seconds per tool invocation; a hung tool fails the run)
# Needs: bash, python3, coreutils, restic, /usr/bin/time (Debian: restic time);
#        optional zstd and b3sum for the "machine limit" reference figures.
# Phases (each RUNS times, tools interleaved, order alternating per run):
#   first backup of v1 into a fresh repo, no-change re-backup, full restore (the
#   repository evicted from the page cache first, targets kept until the end),
#   backup of the mutated tree v2 into a copy of a repo already holding v1.
# Output: Markdown on stdout and in $WORK/results.md; tool logs in $WORK/log.txt.
set -euo pipefail

die()  { echo "compare_restic.sh: error: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }
usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }

ONLY="" INSTALL=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --only) ONLY=${2:-}; shift 2 ;;
    --only=*) ONLY=${1#*=}; shift ;;
    --install) INSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case $ONLY in "") TOOLS=(kura restic) ;; kura|restic) TOOLS=("$ONLY") ;; *) die "--only takes kura or restic" ;; esac

HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
CORPUS_GEN=${CORPUS_GEN:-$HERE/lib/make_corpus.py}
SIZE_MB=${SIZE_MB:-1024} FILES=${FILES:-50000} RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/kura-bench} KURA=${KURA:-$ROOT/target/release/kura} TIMEOUT=${TIMEOUT:-7200}
export KURA_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
export RESTIC_CACHE_DIR=$WORK/restic-cache   # restic's default cache behaviour, kept out of $HOME
has() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

# ---- prerequisites ---------------------------------------------------------
missing=()
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
has restic && ! command -v restic >/dev/null && missing+=(restic)
if ((${#missing[@]})); then
  if ((INSTALL)) && ((EUID == 0)); then
    apt-get update -q && apt-get install -y -q "${missing[@]}"
  else
    die "missing: ${missing[*]} -- install with: sudo apt-get install -y ${missing[*]} (or run as root with --install)"
  fi
fi
if ((INSTALL)) && ((EUID == 0)); then   # optional reference tools; b3sum may not exist everywhere
  for p in zstd b3sum; do command -v $p >/dev/null || apt-get install -y -q $p >/dev/null 2>&1 || true; done
fi
[[ -f $CORPUS_GEN ]] || die "corpus generator not found: $CORPUS_GEN (set CORPUS_GEN=...)"
if has kura; then
  [[ -x $KURA ]] || die "kura binary not found/executable at $KURA (cargo build --release, set KURA=..., or use --only restic)"
  KURA_VER=$(timeout 30 "$KURA" --version 2>&1) || die "'$KURA --version' failed: $KURA_VER"
fi
RESTIC_VER=$(has restic && restic version || echo "n/a")

mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
LOG=$WORK/log.txt RAW=$WORK/raw.tsv NOTES=$WORK/notes.txt
: >"$LOG"; : >"$RAW"; : >"$NOTES"; rm -rf "$RESTIC_CACHE_DIR"

# quiet CMD...: untimed step, output to the log, fail loudly (incl. timeout).
quiet() { timeout "$TIMEOUT" "$@" >>"$LOG" 2>&1 || die "failed (rc=$?, 124=timeout): $* -- see $LOG"; }
# tcmd TOOL REPO: sets array CMD = tool invocation bound to REPO.
tcmd() {
  case $1 in
    kura)   CMD=(env KURA_REPOSITORY="$2" "$KURA") ;;
    restic) CMD=(env RESTIC_REPOSITORY="$2" restic) ;;
  esac
}
# measure METRIC TOOL RUN CMD...: time CMD, record "<metric>_s" and "<metric>_rss_kb".
measure() {
  local m=$1 t=$2 r=$3; shift 3
  sync   # flush dirty pages from untimed prep so they do not land in the timed run
  echo "### $m $t run $r: $*" >>"$LOG"
  timeout "$TIMEOUT" /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >>"$LOG" 2>&1 \
    || die "$t $m (run $r) failed (rc=$?, 124=timeout after ${TIMEOUT}s) -- see $LOG"
  read -r secs kb < <(tail -n1 "$WORK/time.out")
  printf '%s_s\t%s\t%s\t%s\n%s_rss_kb\t%s\t%s\t%s\n' "$m" "$t" "$r" "$secs" "$m" "$t" "$r" "$kb" >>"$RAW"
  note "$t $m run $r: ${secs}s, ${kb} kB max RSS"
}
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }   # METRIC TOOL RUN VALUE
reposize() { du -sb "$1" | cut -f1; }
warm() { tar cf - -C "$1" . | cat >/dev/null; }     # untimed read so both tools see a warm cache
# evict DIR: drops DIR's files from the page cache (posix_fadvise DONTNEED, no root
# needed), so that a restore reads its repository from the disk, as a recovery does.
# Without it, whichever tool wrote its packs through the page cache would restore
# from memory (kura writes packs with O_DIRECT, restic through the cache).
evict() {
  sync
  python3 - "$1" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        try:
            fd = os.open(os.path.join(root, f), os.O_RDONLY)
        except OSError:
            continue
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

# ---- corpus: v1 is generated once and reused if parameters match ----------
C=$WORK/corpus V1=$WORK/corpus/v1 V2=$WORK/corpus/v2
PARAMS="size_mb=$SIZE_MB files=$FILES gen=$(sha256sum "$CORPUS_GEN" | cut -c1-16)"
if [[ ! -d $V1 || "$(cat "$C/params" 2>/dev/null)" != "$PARAMS" ]]; then
  note "generating corpus v1 ($SIZE_MB MB, $FILES files)"
  rm -rf "$C"; mkdir -p "$C"
  quiet python3 "$CORPUS_GEN" "$V1" --size-mb "$SIZE_MB" --files "$FILES"
  echo "$PARAMS" >"$C/params"
fi
# v2 starts as an unmutated copy; the "pristine" repos snapshot it at *its own path*
# before mutation, so the timed v2 backup is a real incremental (parent snapshot,
# unchanged inodes/mtimes), exactly like backing up an edited directory again.
rm -rf "$V2"; cp -a "$V1" "$V2"
for t in "${TOOLS[@]}"; do
  note "preparing pristine $t repo holding v1 content (untimed)"
  P=$WORK/pristine-$t; rm -rf "$P"; tcmd "$t" "$P"
  quiet "${CMD[@]}" init; quiet "${CMD[@]}" backup "$V2"
done
note "mutating v2"; quiet python3 "$CORPUS_GEN" --mutate "$V2" --seed 2
CORPUS_BYTES=$(du -sb "$V1" | cut -f1); CORPUS_FILES=$(find "$V1" -type f | wc -l)

# ---- machine-limit reference figures (once) --------------------------------
warm "$V1"
mibs() { awk -v b="$CORPUS_BYTES" -v a="$1" -v z="$2" 'BEGIN{printf "%.1f", b/1048576/(z-a)}'; }
if command -v b3sum >/dev/null; then
  t0=$(date +%s.%N); (cd "$V1" && find . -type f -print0 | xargs -0 b3sum --num-threads 1 >/dev/null)
  echo "- b3sum --num-threads 1 over all files: $(mibs "$t0" "$(date +%s.%N)") MiB/s" >>"$NOTES"
else echo "- b3sum not installed: skipped" >>"$NOTES"; fi
if command -v zstd >/dev/null; then
  t0=$(date +%s.%N); zb=$(tar cf - -C "$V1" . | zstd -3 -T2 -q -c | wc -c)
  echo "- tar | zstd -3 -T2: $(mibs "$t0" "$(date +%s.%N)") MiB/s, ratio $(awk -v a="$CORPUS_BYTES" -v b="$zb" 'BEGIN{printf "%.2f", a/b}')" >>"$NOTES"
else echo "- zstd not installed: skipped" >>"$NOTES"; fi

# verify TOOL DIR: compare restored tree with $V1 (type, size, sha256, link target; mode+mtime separately).
verify() {
  python3 - "$V1" "$2" "$1" >>"$NOTES" <<'EOF'
import hashlib, os, stat, sys
def manifest(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n); st = os.lstat(p); rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode): c = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode): c = ("dir",)
            else:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
                c = ("file", st.st_size, h.hexdigest())
            out[rel] = (c, (stat.S_IMODE(st.st_mode), int(st.st_mtime)) if not stat.S_ISLNK(st.st_mode) else None)
    return out
a, b = manifest(sys.argv[1]), manifest(sys.argv[2])
content = sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or a[k][0] != b[k][0])
meta = sorted(k for k in a.keys() & b.keys() if a[k][0] == b[k][0] and a[k][1] != b[k][1])
tool = sys.argv[3]
if content:
    print(f"- WARNING: {tool} restore differs from source in {len(content)} entries, e.g. {content[:3]}")
    print(f"WARNING: {tool} restore is NOT identical to the source", file=sys.stderr)
else:
    print(f"- {tool} restore verified: {len(a)} entries identical in content (sha256)")
if meta: print(f"- note: {tool} restore: {len(meta)} entries differ in mode/mtime, e.g. {meta[:3]}")
EOF
}

# ---- timed runs ------------------------------------------------------------
for ((r = 1; r <= RUNS; r++)); do
  order=("${TOOLS[@]}"); ((r % 2 == 0)) && order=($(printf '%s\n' "${TOOLS[@]}" | tac))
  warm "$V1"
  for t in "${order[@]}"; do              # 1. first backup into an empty repo
    R=$WORK/repo-$t; rm -rf "$R"; tcmd "$t" "$R"; quiet "${CMD[@]}" init
    measure first_backup "$t" "$r" "${CMD[@]}" backup "$V1"
    record repo_size_v1_bytes "$t" "$r" "$(reposize "$R")"
  done
  for t in "${order[@]}"; do              # 2. no-change backup of the same tree
    tcmd "$t" "$WORK/repo-$t"; measure nochange_backup "$t" "$r" "${CMD[@]}" backup "$V1"
  done
  for t in "${order[@]}"; do              # 3. full restore of latest (v1) snapshot
    # Targets are kept until the end: on ext4, creating files soon after deleting
    # tens of thousands costs much more (the inode allocator skips recently freed
    # inodes), which would tax whichever tool restored second.
    D=$WORK/restore-$t-$r; rm -rf "$D"; mkdir -p "$D"; tcmd "$t" "$WORK/repo-$t"
    evict "$WORK/repo-$t"
    measure restore "$t" "$r" "${CMD[@]}" restore latest --target "$D"
    ((r == 1)) && verify "$t" "$D$V1"
  done
  for t in "${order[@]}"; do rm -rf "$WORK/repo-$t"; done
  warm "$V2"
  for t in "${order[@]}"; do              # 4. backup of mutated v2 into repo holding v1
    M=$WORK/mut-$t; rm -rf "$M"; cp -a "$WORK/pristine-$t" "$M"; tcmd "$t" "$M"
    measure mutate_backup "$t" "$r" "${CMD[@]}" backup "$V2"
    record repo_size_v1v2_bytes "$t" "$r" "$(reposize "$M")"; rm -rf "$M"
  done
done

# ---- report ----------------------------------------------------------------
{
  echo "# kura vs restic benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"; echo
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
  echo "- memory: $(awk '/MemTotal/{t=$2}/MemAvailable/{a=$2}END{printf "%.1f GiB total, %.1f GiB available", t/1048576, a/1048576}' /proc/meminfo)"
  echo "- kura: ${KURA_VER:-n/a} ($KURA)"; echo "- restic: $RESTIC_VER (default repo format, compression auto)"
  echo "- corpus: make_corpus.py --size-mb $SIZE_MB --files $FILES -> $CORPUS_FILES files, $CORPUS_BYTES bytes; v2 = --mutate --seed 2; RUNS=$RUNS"
  echo "- commands (repo/password via KURA_REPOSITORY/KURA_PASSWORD, RESTIC_REPOSITORY/RESTIC_PASSWORD):"
  echo "  \`kura init\` / \`kura backup $V1\` / \`kura restore latest --target DIR\`; v2: \`kura backup $V2\`"
  echo "  \`restic init\` / \`restic backup $V1\` / \`restic restore latest --target DIR\`; v2: \`restic backup $V2\`"
  echo; echo "Machine-limit references and verification:"; cat "$NOTES"; echo
  python3 - "$RAW" "$CORPUS_BYTES" <<'EOF'
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m, t, r, v = line.split("\t"); vals[(m, t)].append(float(v))
corpus = int(sys.argv[2])
rows = [("first backup (s)", "first_backup_s", "t"), ("no-change backup (s)", "nochange_backup_s", "t"),
        ("backup after mutate (s)", "mutate_backup_s", "t"), ("full restore (s)", "restore_s", "t"),
        ("first backup peak RSS (MiB)", "first_backup_rss_kb", "kb"),
        ("repo size after v1 (MiB)", "repo_size_v1_bytes", "b"), ("repo size after v1+v2 (MiB)", "repo_size_v1v2_bytes", "b")]
scale = {"t": 1, "kb": 1 / 1024, "b": 1 / 1048576}
med = lambda m, t: statistics.median(vals[(m, t)]) if vals.get((m, t)) else None
fmt = lambda x: "-" if x is None else f"{x:.2f}"
print("| figure | kura (median) | restic (median) | ratio |\n|---|---:|---:|---:|")
for label, m, kind in rows:
    k, r = med(m, "kura"), med(m, "restic")
    ratio = "-" if not (k and r) else f"{(r / k if kind == 't' else k / r):.2f}"
    s = scale[kind]
    print(f"| {label} | {fmt(k and k * s)} | {fmt(r and r * s)} | {ratio} |")
print("\nratio = restic/kura for times (>1: kura faster); kura/restic for RSS and size (<1: kura smaller).")
for t in ("kura", "restic"):
    if med("first_backup_s", t): print(f"first backup throughput {t}: {corpus / 1048576 / med('first_backup_s', t):.1f} MiB/s")
print("\n### Raw runs\n\n| metric | tool | runs |\n|---|---|---|")
for (m, t), v in vals.items():
    print(f"| {m} | {t} | {', '.join(f'{x:.0f}' if x.is_integer() else f'{x:g}' for x in v)} |")
EOF
} | tee "$WORK/results.md"
rm -rf "$WORK/pristine-kura" "$WORK/pristine-restic" "$V2" "$WORK"/restore-*
