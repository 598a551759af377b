#!/usr/bin/env bash
# Restore from the remote site, side by side: kura, restic and a plain parallel
# download of the same objects, from one single-node Garage on loopback.
#
#   SIZE_MB=400 FILES=5000 RUNS=3 benches/remote_restore.sh
#   BIG_MB=1024 RUNS=3 benches/remote_restore.sh     # one large file instead
#   KURA=path/to/kura ...                            # that binary, no build
#
# Needs: garage (scripts/deps/garage.sh), restic and curl (Debian packages), python3.
# Builds kura in release mode, makes a mixed corpus with make_corpus.py
# ($CORPUS_SCRIPT), backs it up with kura and with restic straight into Garage, then
# RUNS times, each with empty caches and an empty target:
#   * kura restore latest   (no local cache: the first thing a fresh machine does)
#   * restic restore latest (no local cache)
#   * download: every object of kura's repository, 16 at a time, with curl
#   * kura ls latest, cold (no cache) and warm (cache from the cold run)
# It checks the first restores against the corpus, and prints every run, the
# medians, peak memory and the ratios. Targets go in $TARGET_BASE (default: beside
# the corpus, on the same file system).
#
# On loopback the server and the client share this machine's cores and the "network"
# costs nothing, so the plain download is nearly free while a restore decrypts,
# decompresses and writes.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-400}
FILES=${FILES:-5000}
RUNS=${RUNS:-3}
PARALLEL=${PARALLEL:-16}
CORPUS_SCRIPT=${CORPUS_SCRIPT:-benches/lib/make_corpus.py}
source benches/lib/garage.sh
for tool in restic curl python3 "$GARAGE"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

# KURA=path/to/kura skips the build.
if [ -z "${KURA:-}" ]; then
  cargo build --release --quiet
  KURA=$PWD/target/release/kura
fi
W=$(mktemp -d /tmp/kura-remote-restore.XXXXXX)
TARGET_BASE=${TARGET_BASE:-$W}
cleanup() { [ -n "${GPID:-}" ] && kill "$GPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W" "$TARGET_BASE"/rr-*; }
trap cleanup EXIT

start_garage "$W"

if [ -n "${BIG_MB:-}" ]; then
  # One large file (a disk image): half random, half compressible text.
  mkdir -p "$W/corpus"
  # (`yes` ends on SIGPIPE once head has enough: not a failure.)
  { head -c $((BIG_MB / 2))M /dev/urandom; yes 'a line of a database dump, 42, 2026-12-06' | head -c $((BIG_MB / 2))M || true; } > "$W/corpus/disk.img"
  FILES=1
else
  python3 "$CORPUS_SCRIPT" "$W/corpus" --size-mb "$SIZE_MB" --files "$FILES" > /dev/null
fi
export KURA_PASSWORD=bench RESTIC_PASSWORD=bench
export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=garage
LOC="s3:http://127.0.0.1:$S3/kura/bench?region=garage&credentials_file=$W/creds"
RREPO="s3:http://127.0.0.1:$S3/restic/bench"
"$KURA" --repo "$LOC" init > /dev/null
"$KURA" --repo "$LOC" --no-cache backup -q "$W/corpus" > /dev/null
restic -r "$RREPO" init -q > /dev/null
restic -r "$RREPO" --no-cache backup -q "$W/corpus" > /dev/null
CORPUS_BYTES=$(du -sb "$W/corpus" | cut -f1)

s3get() { curl -sf --aws-sigv4 "aws:amz:garage:s3" --user "$KEY:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
s3get "http://127.0.0.1:$S3/kura?list-type=2&max-keys=1000&prefix=bench%2F" \
  | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g' > "$W/objects"
REPO_BYTES=$(s3get "http://127.0.0.1:$S3/kura?list-type=2&max-keys=1000&prefix=bench%2F" \
  | grep -o '<Size>[0-9]*</Size>' | sed 's/<[^>]*>//g' | paste -sd+ | bc)
echo "corpus $((CORPUS_BYTES / 1048576)) MiB in $FILES files; kura repository $((REPO_BYTES / 1048576)) MiB in $(wc -l < "$W/objects") objects"

# seconds and peak KiB of a command: "S KB"
timed() { /usr/bin/time -f "%e %M" -o "$W/time" "$@" > /dev/null; cat "$W/time"; }
cat > "$W/download.sh" <<EOF
#!/usr/bin/env bash
xargs -P $PARALLEL -I{} curl -sf -o /dev/null --aws-sigv4 "aws:amz:garage:s3" --user "$KEY:$SECRET" \\
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "http://127.0.0.1:$S3/kura/{}" < "$W/objects"
EOF
chmod +x "$W/download.sh"

declare -a kura_s kura_kb restic_s restic_kb dl_s lsc_s lsw_s
for i in $(seq "$RUNS"); do
  # Targets are kept until the end: on ext4, creating files soon after deleting
  # many costs more (the allocator skips recently freed inodes), which would tax
  # whichever tool ran first. The order alternates between runs too.
  rm -rf "$W/cache" "$W/rcache"
  for tool in $( ((i % 2)) && echo "kura restic" || echo "restic kura"); do
    # The previous restore's dirty pages are written back now, not during this one.
    sync
    if [ "$tool" = kura ]; then
      read -r s kb < <(timed "$KURA" --repo "$LOC" --cache-dir "$W/cache" restore latest --target "$TARGET_BASE/rr-kura$i")
      kura_s+=("$s"); kura_kb+=("$kb")
    else
      read -r s kb < <(timed restic -r "$RREPO" --cache-dir "$W/rcache" restore latest --target "$TARGET_BASE/rr-restic$i" -q)
      restic_s+=("$s"); restic_kb+=("$kb")
    fi
  done
  sync
  read -r s _ < <(timed "$W/download.sh"); dl_s+=("$s")
  rm -rf "$W/cache"
  read -r s _ < <(timed "$KURA" --repo "$LOC" --cache-dir "$W/cache" ls latest); lsc_s+=("$s")
  read -r s _ < <(timed "$KURA" --repo "$LOC" --cache-dir "$W/cache" ls latest); lsw_s+=("$s")
  if [ "$i" = 1 ]; then
    diff -r "$W/corpus" "$TARGET_BASE/rr-kura1$W/corpus" > /dev/null || { echo "kura's restore differs from the corpus" >&2; exit 1; }
    diff -r "$W/corpus" "$TARGET_BASE/rr-restic1$W/corpus" > /dev/null || { echo "restic's restore differs" >&2; exit 1; }
  fi
  echo "run $i: kura ${kura_s[-1]}s ${kura_kb[-1]}KiB | restic ${restic_s[-1]}s ${restic_kb[-1]}KiB | download ${dl_s[-1]}s | ls cold ${lsc_s[-1]}s warm ${lsw_s[-1]}s"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mk=$(median "${kura_s[@]}"); mr=$(median "${restic_s[@]}"); md=$(median "${dl_s[@]}")
mib() { echo "scale=0; $CORPUS_BYTES / 1048576 / $1" | bc; }
echo "median kura restore:   ${mk}s ($(mib "$mk") MiB/s), peak $(median "${kura_kb[@]}") KiB"
echo "median restic restore: ${mr}s ($(mib "$mr") MiB/s), peak $(median "${restic_kb[@]}") KiB"
echo "median plain download: ${md}s ($(echo "scale=0; $REPO_BYTES / 1048576 / $md" | bc) MiB/s of repository bytes)"
echo "median kura ls latest: cold $(median "${lsc_s[@]}")s, warm $(median "${lsw_s[@]}")s"
echo "kura vs restic: $(echo "scale=2; $mr / $mk" | bc)x faster"
echo "kura vs download: $(echo "scale=0; 100 * $md / $mk" | bc)% of the download's throughput"
