#!/usr/bin/env bash
# Peak memory of prune on a repository of about 1 million small blobs, kura vs restic.
#
# kura: examples/synth_repo writes the blobs straight through the library (seconds):
#   1,000,000 distinct 128-byte data blobs, two snapshots each using half, one removed.
# restic: the comparable repository is made the slow, real way: 1,000,000 files of
#   128 distinct bytes each (one blob per file), split in two trees backed up as two
#   snapshots; the second is forgotten.
# Both prunes then find half of the data unused. Peak RSS from /usr/bin/time.
# Usage: benches/prune_memory.sh [BLOBS]   (WORK=/tmp/kura-prune-mem by default)
set -euo pipefail
BLOBS=${1:-1000000}
WORK=${WORK:-/tmp/kura-prune-mem}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export KURA_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --release --quiet --bin kura --example synth_repo
KURA=$ROOT/target/release/kura
t() { /usr/bin/time -f "%e s, peak RSS %M KiB" "$@"; }

echo "== kura: synthetic repository with $BLOBS blobs"
"$ROOT/target/release/examples/synth_repo" "$WORK/kura" "$BLOBS"
echo "kura prune (marks and repacks):";  t "$KURA" -r "$WORK/kura" prune -q >/dev/null
echo "kura prune (deletes):";            t "$KURA" -r "$WORK/kura" prune -q >/dev/null
echo "kura check:";                      t "$KURA" -r "$WORK/kura" check -q >/dev/null

if command -v restic >/dev/null; then
  echo "== restic: $BLOBS files of 128 distinct bytes"
  python3 - "$WORK/files" "$BLOBS" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    half, d = i % 2, (i // 2) // 1000
    p = os.path.join(root, f"half{half}", f"dir{d:05}")
    if i < 2000 or (i // 2) % 1000 == 0: os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, f"f{i:07}"), "wb") as f:
        f.write(i.to_bytes(8, "little") + b"\0" * 120)
PY
  restic -r "$WORK/restic" init -q
  restic -r "$WORK/restic" backup -q "$WORK/files/half0"
  restic -r "$WORK/restic" backup -q "$WORK/files/half1"
  second=$(restic -r "$WORK/restic" snapshots --json --path "$WORK/files/half1" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  restic -r "$WORK/restic" forget -q "$second"
  echo "restic prune:"; t restic -r "$WORK/restic" prune -q
  echo "restic check:"; t restic -r "$WORK/restic" check -q
fi
