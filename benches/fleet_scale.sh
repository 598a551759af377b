#!/usr/bin/env bash
# The coordinator at fleet scale: AGENTS simulated agents (examples/fleet_sim.rs, one
# process, the real protocol over mutual TLS) and SYSTEMS systems spread over them,
# each backed up every minute on the coordinator's clock. Reports the daemon's CPU
# time and peak memory (VmHWM) over the run, the tasks done and the job runs recorded.
#
# Then (RECOVERY=1, the default) a recovery of every system: the coordinator is
# restarted without schedules, every plan system restores one snapshot (a shared
# repository, so that one `kura backup` makes it), `kura recover --parallel SYSTEMS`
# runs against it, and the simulated agents report each restore done at once.
# Reports the time from the start until every restore task was handed out and
# until the recovery ended, and the CPU and peak memory of the daemon and of
# `kura recover`. SECS=0 skips the scheduled part.
#
#   benches/fleet_scale.sh                      # 200 agents, 1000 systems, 150 s, release
#   PROFILE=debug AGENTS=50 SYSTEMS=250 SECS=90 benches/fleet_scale.sh
#   PROFILE=debug SECS=0 benches/fleet_scale.sh # the recovery only
set -euo pipefail
AGENTS=${AGENTS:-200}
SYSTEMS=${SYSTEMS:-1000}
SECS=${SECS:-150}
RECOVERY=${RECOVERY:-1}
PROFILE=${PROFILE:-release}
cd "$(dirname "$0")/.."
if [ "$PROFILE" = release ]; then
    cargo build --release --bin kura --example fleet_sim
else
    cargo build --bin kura --example fleet_sim
fi
BIN=target/$PROFILE
W=$(mktemp -d)
DAEMON=
SIMPID=
trap 'kill -9 $DAEMON $SIMPID 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -m 700 "$W/run"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo 'bench passphrase' > "$W/pass"; chmod 600 "$W/pass"
"$BIN/kura" init --repo "$W/repo" --password-file "$W/pass" >/dev/null
{
    printf '[repository]\nlocation = "%s/repo"\npassword_file = "%s/pass"\n\n' "$W" "$W"
    printf '[fleet]\nlisten = "127.0.0.1:%s"\nname = "coord"\n\n' "$PORT"
    for i in $(seq 0 $((SYSTEMS - 1))); do
        printf '[[system]]\nname = "s%s"\npriority = 1\nhost = "h%s"\npaths = ["/srv/s%s"]\nschedule = "0 * * * * *"\n\n' \
            "$i" $((i % AGENTS)) "$i"
    done
} > "$W/kura.toml"
start_daemon() {
    KURA_LOG=warn "$BIN/kura" daemon --config "$1" --state "$W/state/state.db" --socket "$W/run/kura.sock" \
        2>> "$W/daemon.log" &
    DAEMON=$!
    until [ -S "$W/run/kura.sock" ]; do sleep 0.1; done
}
start_daemon "$W/kura.toml"
mkdir -p "$W/tokens"
for i in $(seq 0 $((AGENTS - 1))); do
    "$BIN/kura" --state "$W/state/state.db" agent enroll "h$i" > "$W/tokens/h$i" 2>/dev/null
done
ticks() { awk '{print $14 + $15}' "/proc/$DAEMON/stat"; }
HZ=$(getconf CLK_TCK)
if [ "$SECS" -gt 0 ]; then
T0=$(ticks)
SIM=$("$BIN/examples/fleet_sim" "https://127.0.0.1:$PORT" "$W/tokens" "$W/agents" "$SECS")
T1=$(ticks)
PEAK=$(awk '/VmHWM/ {print $2, $3}' "/proc/$DAEMON/status")
RUNS=$("$BIN/kura" --json jobs --limit 1000000 --socket "$W/run/kura.sock" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r), sum(1 for x in r if x["outcome"]=="ok"))')
echo "profile $PROFILE, $AGENTS agents, $SYSTEMS systems, schedule every minute, ${SECS} s"
echo "simulated agents: $SIM"
echo "daemon CPU: $(python3 -c "print(round(($T1 - $T0) / $HZ, 1))") s over the run; peak memory (VmHWM): $PEAK"
echo "job runs recorded (all, ok): $RUNS"
fi
[ "$RECOVERY" = 1 ] || exit 0

# The recovery of every system.
mkdir -p "$W/src"
echo "one small file" > "$W/src/f.txt"
# One snapshot that every system may restore: it carries each one's tag.
TAGS=()
for i in $(seq 0 $((SYSTEMS - 1))); do TAGS+=(--tag "system:s$i"); done
SNAP=$("$BIN/kura" --json backup --repo "$W/repo" --password-file "$W/pass" "${TAGS[@]}" "$W/src" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"])')
kill -TERM "$DAEMON"; while kill -0 "$DAEMON" 2>/dev/null; do sleep 0.1; done
# The scheduled part's unfinished backups are cancelled: the recovery is measured alone.
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("UPDATE fleet_tasks SET state = '"'"'cancelled'"'"' WHERE state IN ('"'"'queued'"'"', '"'"'running'"'"')"); c.commit()' "$W/state/state.db"
{
    printf '[repository]\nlocation = "%s/repo"\npassword_file = "%s/pass"\n\n' "$W" "$W"
    printf '[deadlines]\np1 = "4h"\n\n'
    printf '[fleet]\nlisten = "127.0.0.1:%s"\nname = "coord"\nshared_repository = true\n\n' "$PORT"
    for i in $(seq 0 $((SYSTEMS - 1))); do
        printf '[[system]]\nname = "s%s"\npriority = 1\nhost = "h%s"\npaths = ["/srv/s%s"]\n\n' "$i" $((i % AGENTS)) "$i"
    done
} > "$W/recover.toml"
{
    printf "name = 'every system'\nconfig = '%s/recover.toml'\n\n" "$W"
    for i in $(seq 0 $((SYSTEMS - 1))); do
        printf "[[system]]\nname = 's%s'\ntarget = '%s/restore/s%s'\nsnapshot = '%s'\n\n" "$i" "$W" "$i" "$SNAP"
    done
} > "$W/plan.toml"
start_daemon "$W/recover.toml"
export KURA_CONFIG="$W/recover.toml"
K=("$BIN/kura" --state "$W/state/state.db")
INC=$("${K[@]}" --json incident open --title "every system" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"${K[@]}" incident resolve-cause "$INC" --note bench >/dev/null
"$BIN/examples/fleet_sim" "https://127.0.0.1:$PORT" "$W/tokens" "$W/agents" 3600 > "$W/sim2.json" &
SIMPID=$!
python3 - "$W/state/state.db" "$AGENTS" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
while True:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    seen = c.execute("SELECT count(*) FROM fleet_agents WHERE last_seen IS NOT NULL").fetchone()[0]
    c.close()
    if seen >= n:
        break
    time.sleep(0.5)
PY
sleep 3
T0=$(ticks)
python3 - "$W" "$SYSTEMS" "$INC" "${K[@]}" <<'PY'
import sqlite3, subprocess, sys, time
w, n, inc, kura = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
cmd = ["/usr/bin/time", "-f", "%U %S %M", "-o", f"{w}/recover.time"] + kura + [
    "--json", "recover", "--incident", inc, "--plan", f"{w}/plan.toml", "--parallel", str(n)]
start = time.monotonic()
p = subprocess.Popen(cmd, stdout=open(f"{w}/recover.out", "w"), stderr=open(f"{w}/recover.err", "w"))
handed = None
while p.poll() is None or handed is None:
    c = sqlite3.connect(f"file:{w}/state/state.db?mode=ro", uri=True)
    out = c.execute("SELECT count(*) FROM fleet_tasks WHERE kind = 'restore' AND started_at IS NOT NULL").fetchone()[0]
    c.close()
    if handed is None and out >= n:
        handed = time.monotonic() - start
    if p.poll() is not None and handed is None:
        break
    time.sleep(0.1)
p.wait()
ended = time.monotonic() - start
c = sqlite3.connect(f"file:{w}/state/state.db?mode=ro", uri=True)
spread = c.execute("SELECT min(created_at), max(created_at), max(started_at), max(ended_at) FROM fleet_tasks "
                   "WHERE kind = 'restore'").fetchone()
c.close()
print(f"restore tasks: first inserted {spread[0]}, last inserted {spread[1]}, last handed out {spread[2]}, last done {spread[3]}")
u, s, m = open(f"{w}/recover.time").read().split()[-3:]
print(f"recovery of {n} systems: every restore task handed out after "
      f"{handed if handed is None else round(handed, 1)} s, recovery ended after {round(ended, 1)} s (exit {p.returncode})")
print(f"kura recover: CPU {round(float(u) + float(s), 1)} s, peak memory {int(m) // 1024} MB")
import collections, json
try:
    systems = json.load(open(f"{w}/recover.out"))["systems"]
    print("systems:", dict(collections.Counter(x["state"] for x in systems)),
          "errors:", dict(collections.Counter(x["error"] for x in systems if x.get("error")).most_common(3)))
except (ValueError, KeyError) as e:
    print("no outcome:", e, open(f"{w}/recover.err").read()[-2000:])
PY
T1=$(ticks)
echo "daemon CPU during the recovery: $(python3 -c "print(round(($T1 - $T0) / $HZ, 1))") s; peak memory (VmHWM): $(awk '/VmHWM/ {print $2, $3}' "/proc/$DAEMON/status")"
