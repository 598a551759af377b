#!/usr/bin/env bash
# Keeping a warm standby current (docs/STANDBY.md): applying a snapshot in which 5%
# of the files changed to a standby that holds the previous one, against a full
# restore of the same snapshot into an empty directory, in one run.
#
#   SIZE_MB=1024 FILES=2048 CHANGED_PCT=5 RUNS=3 benches/standby_apply.sh
#
# Needs: hyperfine, python3. Builds kura in release mode, makes FILES random files
# (SIZE_MB in all), backs them up as system `bench` with a standby, changes
# CHANGED_PCT% of the files (64 KiB rewritten in the middle of each), backs up
# again without touching the standby, then RUNS times each:
#   * apply:   kura standby apply bench --snapshot NEW (prepared: standby rolled back to OLD)
#   * restore: kura restore NEW into an empty directory (prepared: rm -rf)
# It checks the standby against the source after the last apply, and prints the
# medians, their ratio and the bytes each writes.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
FILES=${FILES:-2048}
CHANGED_PCT=${CHANGED_PCT:-5}
RUNS=${RUNS:-3}
for tool in hyperfine python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
cargo build --release --quiet
KURA=$PWD/target/release/kura
W=$(mktemp -d /tmp/kura-standby-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export KURA_PASSWORD=bench KURA_CONFIG=$W/kura.toml
printf bench > "$W/pass"; chmod 600 "$W/pass"
cat > "$KURA_CONFIG" <<TOML
[repository]
location = "$W/repo"
password_file = "$W/pass"

[[system]]
name = "bench"
priority = 3
paths = ["$W/src"]

[system.standby]
path = "$W/standby/bench"
TOML

python3 - "$W/src" "$SIZE_MB" "$FILES" <<'PY'
import os, sys
root, size_mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
each = size_mb * 1024 * 1024 // files
for i in range(files):
    d = os.path.join(root, f"d{i % 32:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.bin"), "wb") as f:
        f.write(os.urandom(each))
PY
"$KURA" --repo "$W/repo" init > /dev/null
OLD=$("$KURA" --json --state "$W/state.db" backup --system bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"])')

python3 - "$W/src" "$FILES" "$CHANGED_PCT" <<'PY'
import os, sys
root, files, pct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = files * pct // 100
for i in range(0, files, files // n)[:n]:
    p = os.path.join(root, f"d{i % 32:02}", f"f{i:05}.bin")
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(65536))
print(f"changed {n} of {files} files", file=sys.stderr)
PY
NEW=$("$KURA" --json --repo "$W/repo" backup --tag system:bench "$W/src" | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"])')

APPLY="$KURA --json --state $W/state.db standby apply bench --snapshot $NEW"
BACK="$KURA --state $W/state.db standby apply bench --snapshot $OLD"
RESTORE="$KURA --repo $W/repo restore $NEW:$W/src --target $W/full"
hyperfine --runs "$RUNS" --export-json "$W/h.json" \
  -n apply --prepare "$BACK > /dev/null" "$APPLY > $W/apply.json" \
  -n restore --prepare "rm -rf $W/full" "$RESTORE > /dev/null"

# The standby now holds NEW: byte for byte what was backed up.
diff -r "$W/src" "$W/standby/bench" > /dev/null && echo "standby == source: ok"
python3 - "$W/h.json" "$W/apply.json" "$W/full" <<'PY'
import json, os, sys
h = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
a = json.load(open(sys.argv[2]))
full = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sys.argv[3]) for f in fs)
sync = a["sync"]
ma, mr = h["apply"]["median"], h["restore"]["median"]
print(f"apply   median {ma:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in h['apply']['times'])})")
print(f"restore median {mr:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in h['restore']['times'])})")
print(f"ratio apply/restore = {ma / mr:.3f}  (goal: at most 0.200)")
print(f"apply: {sync['files_written']} files written ({sync['files_reused']} rebuilt from old blocks), "
      f"{sync['files_unchanged']} untouched; fetched+written {sync['bytes_written'] / 2**20:.1f} MiB, "
      f"copied from old versions {sync['bytes_reused'] / 2**20:.1f} MiB")
print(f"restore: wrote {full / 2**20:.1f} MiB")
PY
