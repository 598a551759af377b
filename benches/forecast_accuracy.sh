#!/usr/bin/env bash
# How close `kura plan forecast` lands to a real drill of the same plan.
# Four systems (priorities 3, 2, 2, 1) from make_corpus.py, two in parallel:
# drill once (this measures each system's throughput), forecast, drill again,
# and compare the forecast's total with the second drill's measured total.
# Usage: benches/forecast_accuracy.sh [WORKDIR]   (SCALE_MB=… sizes the largest system)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
KURA=$PWD/target/release/kura
W=${1:-/tmp/kura-forecast}
SCALE=${SCALE_MB:-200}
CORPUS=${CORPUS:-benches/lib/make_corpus.py}
rm -rf "$W" && mkdir -p "$W"
export KURA_STATE=$W/state.db KURA_PASSWORD=bench
echo bench > "$W/pass"
i=0
for spec in "dns 3 $((SCALE / 4))" "db 2 $SCALE" "app 2 $((SCALE / 2))" "files 1 $((SCALE * 3 / 4))"; do
  set -- $spec
  i=$((i + 1))
  python3 "$CORPUS" "$W/src/$1" --size-mb "$3" --files $(( $3 * 40 )) --seed "$i" >/dev/null
done
cat > "$W/kura.toml" <<TOML
[repository]
location = "repo"
password_file = "pass"
[[system]]
name = "dns"
priority = 3
paths = ["$W/src/dns"]
[[system]]
name = "db"
priority = 2
paths = ["$W/src/db"]
[[system]]
name = "app"
priority = 2
paths = ["$W/src/app"]
[[system]]
name = "files"
priority = 1
paths = ["$W/src/files"]
TOML
cat > "$W/plan.toml" <<TOML
name = "forecast-bench"
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
for s in dns db app files; do "$KURA" --repo "$W/repo" -q backup "$W/src/$s" --tag "system:$s" >/dev/null; done
total() { # seconds from the drill's start to its last system's end
  "$KURA" --json drill show "$1" | python3 -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
start = t(d["run"]["started_at"])
print(round(max((t(s["ended_at"]) - start).total_seconds() for s in d["systems"]), 2))'
}
"$KURA" -q drill run --plan "$W/plan.toml" --sandbox "$W/sandbox" --parallel 2 >/dev/null || true
"$KURA" plan forecast "$W/plan.toml" --parallel 2
predicted=$("$KURA" --json plan forecast "$W/plan.toml" --parallel 2 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["total_secs"], 2))')
"$KURA" -q drill run --plan "$W/plan.toml" --sandbox "$W/sandbox" --parallel 2 >/dev/null || true
python3 - "$predicted" "$(total 1)" "$(total 2)" <<'PY'
import sys
p, m1, m2 = map(float, sys.argv[1:])
print(f"forecast {p:.2f} s; the drill it learned from {m1:.2f} s ({100 * (p - m1) / m1:+.1f}%); "
      f"a second drill {m2:.2f} s ({100 * (p - m2) / m2:+.1f}%)")
PY
