#!/usr/bin/env bash
# Does the forecast hold when the data changes in shape after the drill it learned from?
# Four systems (priorities 3, 2, 2, 1) from make_corpus.py, two in parallel: drill
# DRILLS times (default 3: the machine's load moves single drills a lot), then grow `db` three times (two more corpora of its size) and add 20,000 small files
# to `app`, back up again, forecast, drill DRILLS times again, and compare with the median. Reports the whole plan's
# error and each changed system's restore error, next to what a bytes-only forecast
# (the drill's time scaled by bytes, the model before the cost model) would have said.
# Usage: benches/forecast_shape.sh [WORKDIR]   (SCALE_MB=… sizes the largest system)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
KURA=$PWD/target/release/kura
W=${1:-/tmp/kura-forecast-shape}
SCALE=${SCALE_MB:-200}
N=${DRILLS:-3}
CORPUS=${CORPUS:-benches/lib/make_corpus.py}
# The base corpora are kept between runs of the same WORKDIR and SCALE_MB (slow to make).
[ "$(cat "$W/scale" 2>/dev/null)" = "$SCALE" ] || rm -rf "$W"
mkdir -p "$W" && echo "$SCALE" > "$W/scale"
find "$W" -mindepth 1 -maxdepth 1 ! -name src ! -name scale -exec rm -rf {} +
rm -rf "$W/src/db/grown1" "$W/src/db/grown2" "$W/src/app/small"
export KURA_STATE=$W/state.db KURA_PASSWORD=bench
echo bench > "$W/pass"
i=0
for spec in "dns 3 $((SCALE / 4))" "db 2 $SCALE" "app 2 $((SCALE / 2))" "files 1 $((SCALE * 3 / 4))"; do
  set -- $spec
  i=$((i + 1))
  mkdir -p "$W/src/$1"
  [ -d "$W/src/$1/base" ] || python3 "$CORPUS" "$W/src/$1/base" --size-mb "$3" --files $(( $3 * 40 )) --seed "$i" >/dev/null
done
cat > "$W/kura.toml" <<TOML
[repository]
location = "repo"
password_file = "pass"
TOML
for spec in "dns 3" "db 2" "app 2" "files 1"; do
  set -- $spec
  printf '[[system]]\nname = "%s"\npriority = %s\npaths = ["%s"]\n' "$1" "$2" "$W/src/$1" >> "$W/kura.toml"
done
cat > "$W/plan.toml" <<TOML
name = "forecast-shape-bench"
config = "kura.toml"
[[system]]
name = "dns"
target = "/nonexistent/dns"
[[system]]
name = "db"
target = "/nonexistent/db"
[[system]]
name = "app"
target = "/nonexistent/app"
depends_on = ["db"]
[[system]]
name = "files"
target = "/nonexistent/files"
TOML
"$KURA" --repo "$W/repo" init >/dev/null
backup() { for s in dns db app files; do "$KURA" --repo "$W/repo" -q backup "$W/src/$s" --tag "system:$s" >/dev/null; done; }
backup
drill() { "$KURA" -q drill run --plan "$W/plan.toml" --sandbox "$W/sandbox" --parallel 2 >/dev/null || true; rm -rf "$W/sandbox"; }
for _ in $(seq "$N"); do drill; done
"$KURA" --json plan forecast "$W/plan.toml" --parallel 2 > "$W/before.json"
# The change in shape: db three times as big, 20,000 small files more in app.
python3 "$CORPUS" "$W/src/db/grown1" --size-mb "$SCALE" --files $(( SCALE * 40 )) --seed 11 >/dev/null
python3 "$CORPUS" "$W/src/db/grown2" --size-mb "$SCALE" --files $(( SCALE * 40 )) --seed 12 >/dev/null
python3 "$CORPUS" "$W/src/app/small" --profile small --size-mb 20 --files 20000 --seed 13 >/dev/null
backup
"$KURA" plan forecast "$W/plan.toml" --parallel 2
"$KURA" --json plan forecast "$W/plan.toml" --parallel 2 > "$W/after.json"
for _ in $(seq "$N"); do drill; done
for i in $(seq $((2 * N))); do "$KURA" --json drill show "$i" > "$W/drill$i.json"; done
python3 - "$W" "$N" <<'PY'
import json, sys
from datetime import datetime
from statistics import median
w, n = sys.argv[1], int(sys.argv[2])
load = lambda n: json.load(open(f"{w}/{n}.json"))
before, after = load("before"), load("after")
drills = [load(f"drill{i}") for i in range(1, 2 * n + 1)]
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
def total(d):
    start = t(d["run"]["started_at"])
    return max((t(s["ended_at"]) - start).total_seconds() for s in d["systems"])
def med(ds, name, key):
    return median(next(s for s in d["systems"] if s["name"] == name)[key] for d in ds)
then, now = drills[:n], drills[n:]
m1, m2 = median(map(total, then)), median(map(total, now))
print(f"before the change: {n} drills, median {m1:.2f} s ({', '.join(f'{total(d):.2f}' for d in then)}); "
      f"forecast {before['total_secs']:.2f} s")
p = after["total_secs"]
print(f"after the change: forecast {p:.2f} s; {n} drills, median {m2:.2f} s "
      f"({', '.join(f'{total(d):.2f}' for d in now)}): error {100 * (p - m2) / m2:+.1f}%")
for r in after["systems"]:
    name = r["name"]
    t1, t2 = med(then, name, "restore_ms") / 1000, med(now, name, "restore_ms") / 1000
    b1 = med(then, name, "bytes")
    by_bytes = t1 * r["bytes"] / max(b1, 1)
    c = r["confidence"]
    print(f"  {name:6} restore: before {t1:6.2f} s, forecast {r['restore_secs']:6.2f} s, after {t2:6.2f} s: "
          f"error {100 * (r['restore_secs'] - t2) / t2:+6.1f}%; bytes-only {by_bytes:6.2f} s "
          f"({100 * (by_bytes - t2) / t2:+6.1f}%); {c['level']}, bytes x{c['bytes_ratio'] or 0:.2f} "
          f"files x{c['files_ratio'] or 0:.2f}")
PY
