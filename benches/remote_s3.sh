#!/usr/bin/env bash
# Throughput of `kura copy` to a local Garage and of `kura restore` from it.
#
#   SIZE_MB=300 RUNS=3 benches/remote_s3.sh
#
# Builds kura in release mode, generates a corpus with benches/lib/make_corpus.py
# (or $CORPUS_SCRIPT), backs it up into a local repository, then RUNS times: copies the
# repository to a fresh prefix on a single-node Garage on loopback, and restores the
# latest snapshot from there into an empty directory. Prints each run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-300}
RUNS=${RUNS:-3}
CORPUS_SCRIPT=${CORPUS_SCRIPT:-benches/lib/make_corpus.py}

cargo build --release --quiet
KURA=$PWD/target/release/kura
W=$(mktemp -d /tmp/kura-remote-bench.XXXXXX)
cleanup() { [ -n "${GPID:-}" ] && kill "$GPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

source benches/lib/garage.sh
start_garage "$W"

python3 "$CORPUS_SCRIPT" "$W/corpus" --size-mb "$SIZE_MB" --files 5000 > /dev/null
export KURA_PASSWORD=bench
"$KURA" --repo "$W/repo" init > /dev/null
"$KURA" --repo "$W/repo" --json backup "$W/corpus" > "$W/backup.json"
REPO_BYTES=$(du -sb "$W/repo" | cut -f1)
echo "corpus ${SIZE_MB} MB, repository $((REPO_BYTES / 1048576)) MiB"

copy_s=(); restore_s=()
for i in $(seq "$RUNS"); do
  LOC="s3:http://127.0.0.1:$S3/bench/run$i?region=garage&credentials_file=$W/creds"
  t0=$(date +%s.%N)
  "$KURA" --repo "$W/repo" --json copy --to "$LOC" > "$W/copy$i.json"
  t1=$(date +%s.%N)
  rm -rf "$W/target"
  "$KURA" --repo "$LOC" --json restore latest --target "$W/target" > /dev/null
  t2=$(date +%s.%N)
  c=$(echo "$t1 - $t0" | bc); r=$(echo "$t2 - $t1" | bc)
  copy_s+=("$c"); restore_s+=("$r")
  echo "run $i: copy ${c}s, restore from remote ${r}s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mc=$(median "${copy_s[@]}"); mr=$(median "${restore_s[@]}")
RB=$(du -sb "$W/target" | cut -f1)
echo "median copy:    ${mc}s = $(echo "$REPO_BYTES / 1048576 / $mc" | bc) MiB/s (repository bytes)"
echo "median restore: ${mr}s = $(echo "$RB / 1048576 / $mr" | bc) MiB/s (restored bytes, $((RB / 1048576)) MiB)"
