#!/usr/bin/env bash
# Reading one large file through `kura mount` vs `kura restore` of the same file.
#
# Makes a file of SIZE (default 1G; half random, half a repeated text, so that both
# the raw and the compressed blob paths are read), backs it up, reads the repository
# once so that both sides start from the same warm page cache, then times, RUNS
# times each (default 3):
#   mount:   a fresh `kura mount` per run (so nothing comes from the mount's own page
#            cache), `cat MNT/snapshots/latest/.../file > /dev/null`
#   restore: `kura restore latest:/.../file --target T` into an emptied directory
# and prints each run, the medians and the ratio restore/mount throughput.
# Needs root (or fusermount3) and /dev/fuse. Public tools only: bash, coreutils.
# Usage: benches/mount_read.sh [SIZE] [RUNS]   (WORK=/tmp/kura-mount-bench, KURA=binary)
set -euo pipefail
SIZE=${1:-1G}
RUNS=${2:-3}
WORK=${WORK:-/tmp/kura-mount-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${KURA:-}" ]; then
  cargo build --release --quiet --bin kura
  KURA=$ROOT/target/release/kura
fi
export KURA_PASSWORD=bench KURA_REPOSITORY=$WORK/repo
MNT=$WORK/mnt
MOUNT_PID=

stop_mount() {
  if [ -n "$MOUNT_PID" ]; then
    kill -TERM "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
  fi
}
trap stop_mount EXIT

# Starts `kura mount` in the background and returns once it printed that it is live.
start_mount() {
  : > "$WORK/mount.out"
  "$KURA" mount "$MNT" > "$WORK/mount.out" 2> "$WORK/mount.err" &
  MOUNT_PID=$!
  until grep -q '^mounted' "$WORK/mount.out"; do
    if ! kill -0 "$MOUNT_PID" 2>/dev/null; then
      echo "kura mount did not start: $(cat "$WORK/mount.err")" >&2
      MOUNT_PID=
      exit 1
    fi
    sleep 0.05
  done
}

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rm -rf "$WORK" && mkdir -p "$WORK/src" "$MNT"
echo "== a $SIZE file: half random, half repeated text"
bytes=$(numfmt --from=iec "$SIZE")
head -c $((bytes / 2)) /dev/urandom > "$WORK/src/big.bin"
(yes "kura mount benchmark line, compressible" || true) | head -c $((bytes - bytes / 2)) >> "$WORK/src/big.bin"
"$KURA" init -q >/dev/null
"$KURA" backup -q "$WORK/src" >/dev/null
cat "$WORK"/repo/data/*/* > /dev/null
FILE=snapshots/latest${WORK}/src/big.bin

mount_ms=()
restore_ms=()
for i in $(seq "$RUNS"); do
  start_mount
  t0=$(now_ns); cat "$MNT/$FILE" > /dev/null; t1=$(now_ns)
  stop_mount
  mount_ms+=($(((t1 - t0) / 1000000)))
  rm -rf "$WORK/restored"
  t0=$(now_ns); "$KURA" restore -q "latest:$WORK/src/big.bin" --target "$WORK/restored" > /dev/null; t1=$(now_ns)
  restore_ms+=($(((t1 - t0) / 1000000)))
  cmp -s "$WORK/src/big.bin" "$WORK/restored/big.bin" || { echo "restored file differs" >&2; exit 1; }
  echo "run $i: mount cat ${mount_ms[-1]} ms, restore ${restore_ms[-1]} ms"
done
m=$(printf '%s\n' "${mount_ms[@]}" | median)
r=$(printf '%s\n' "${restore_ms[@]}" | median)
mb=$((bytes / 1048576))
echo "median: mount cat $m ms ($((mb * 1000 / m)) MiB/s), restore $r ms ($((mb * 1000 / r)) MiB/s)"
echo "mount reads at $(awk -v m="$m" -v r="$r" 'BEGIN {printf "%.2f", r / m}') x the speed of restore (goal: >= 0.5)"
rm -rf "$WORK"
