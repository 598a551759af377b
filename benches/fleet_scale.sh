#!/usr/bin/env bash
# The coordinator at fleet scale: AGENTS simulated agents (examples/fleet_sim.rs, one
# process, the real protocol over mutual TLS) and SYSTEMS systems spread over them,
# each backed up every minute on the coordinator's clock. Reports the daemon's CPU
# time and peak memory (VmHWM) over the run, the tasks done and the job runs recorded.
#
#   benches/fleet_scale.sh                      # 200 agents, 1000 systems, 150 s, release
#   PROFILE=debug AGENTS=50 SYSTEMS=250 SECS=90 benches/fleet_scale.sh
set -euo pipefail
AGENTS=${AGENTS:-200}
SYSTEMS=${SYSTEMS:-1000}
SECS=${SECS:-150}
PROFILE=${PROFILE:-release}
cd "$(dirname "$0")/.."
if [ "$PROFILE" = release ]; then
    cargo build --release --bin kura --example fleet_sim
else
    cargo build --bin kura --example fleet_sim
fi
BIN=target/$PROFILE
W=$(mktemp -d)
trap 'kill -9 $DAEMON 2>/dev/null || true; rm -rf "$W"' EXIT
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
KURA_LOG=warn "$BIN/kura" daemon --config "$W/kura.toml" --state "$W/state/state.db" --socket "$W/run/kura.sock" \
    2> "$W/daemon.log" &
DAEMON=$!
until [ -S "$W/run/kura.sock" ]; do sleep 0.1; done
mkdir -p "$W/tokens"
for i in $(seq 0 $((AGENTS - 1))); do
    "$BIN/kura" --state "$W/state/state.db" agent enroll "h$i" > "$W/tokens/h$i" 2>/dev/null
done
ticks() { awk '{print $14 + $15}' "/proc/$DAEMON/stat"; }
T0=$(ticks)
SIM=$("$BIN/examples/fleet_sim" "https://127.0.0.1:$PORT" "$W/tokens" "$W/agents" "$SECS")
T1=$(ticks)
HZ=$(getconf CLK_TCK)
PEAK=$(awk '/VmHWM/ {print $2, $3}' "/proc/$DAEMON/status")
RUNS=$("$BIN/kura" --json jobs --limit 1000000 --socket "$W/run/kura.sock" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r), sum(1 for x in r if x["outcome"]=="ok"))')
echo "profile $PROFILE, $AGENTS agents, $SYSTEMS systems, schedule every minute, ${SECS} s"
echo "simulated agents: $SIM"
echo "daemon CPU: $(python3 -c "print(round(($T1 - $T0) / $HZ, 1))") s over the run; peak memory (VmHWM): $PEAK"
echo "job runs recorded (all, ok): $RUNS"
