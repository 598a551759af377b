#!/usr/bin/env bash
# kura's main job, end to end, with nothing but local directories (no server):
#   1. back up five sample systems with recovery priorities 3, 2, 2, 1 and 0;
#   2. a simulated ransomware incident destroys their data;
#   3. the incident is recorded and its cause resolved;
#   4. kura restores the systems in priority order, tracking each deadline;
#   5. a compliance report is written as HTML.
# Everything lands in ./kura-demo (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
KURA=$PWD/target/release/kura
DEMO=$PWD/kura-demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
export KURA_STATE=$DEMO/state.db
echo "demo-passphrase" > "$DEMO/passphrase" && chmod 600 "$DEMO/passphrase"

# Five small "systems".
S=$DEMO/systems
mkdir -p "$S/dns/zones" "$S/db" "$S/app/conf" "$S/files/projects" "$S/wiki/pages"
for z in example.com example.net; do printf '$ORIGIN %s.\n@ IN A 192.0.2.1\n' "$z" > "$S/dns/zones/$z.zone"; done
head -c 20000000 /dev/urandom > "$S/db/data.bin"; seq 1 200000 > "$S/db/rows.txt"
echo "listen = 8080" > "$S/app/conf/app.ini"; seq 1 5000 > "$S/app/app.log"
for i in $(seq 1 300); do echo "project notes $i" > "$S/files/projects/p$i.txt"; done
for i in $(seq 1 50); do echo "= Page $i =" > "$S/wiki/pages/page$i.txt"; done

# The config declares the systems and their priorities; the plan says how to restore them.
cat > "$DEMO/kura.toml" <<TOML
[repository]
location = "repo"
password_file = "passphrase"

[[system]]
name = "dns"
priority = 3
paths = ["$S/dns"]

[[system]]
name = "db"
priority = 2
paths = ["$S/db"]

[[system]]
name = "app"
priority = 2
paths = ["$S/app"]

[[system]]
name = "files"
priority = 1
paths = ["$S/files"]

[[system]]
name = "wiki"
priority = 0
paths = ["$S/wiki"]
TOML
cat > "$DEMO/plan.toml" <<TOML
name = "demo-site"
config = "kura.toml"

[[system]]
name = "dns"
target = "restored/dns"
[[system.verify]]
command = 'test -s "\$KURA_TARGET/zones/example.com.zone"'

[[system]]
name = "db"
target = "restored/db"
[[system.verify]]
command = 'test \$(wc -l < "\$KURA_TARGET/rows.txt") -eq 200000'

[[system]]
name = "app"
target = "restored/app"
depends_on = ["db"]
[[system.verify]]
command = 'grep -q 8080 "\$KURA_TARGET/conf/app.ini"'

[[system]]
name = "files"
target = "restored/files"
depends_on = ["dns"]

[[system]]
name = "wiki"
target = "restored/wiki"
TOML

set -x
"$KURA" --repo "$DEMO/repo" --password-file "$DEMO/passphrase" init
"$KURA" config check "$DEMO/kura.toml"
"$KURA" plan show "$DEMO/plan.toml"
for sys in dns db app files wiki; do
  "$KURA" --repo "$DEMO/repo" --password-file "$DEMO/passphrase" backup "$S/$sys" --tag "system:$sys"
done
"$KURA" --repo "$DEMO/repo" --password-file "$DEMO/passphrase" snapshots
set +x

# The incident: ransomware encrypts every system. Keep a pristine copy to compare with.
cp -a "$S" "$DEMO/pristine"
find "$S" -type f -exec sh -c 'for f; do openssl rand -base64 32 > "$f" 2>/dev/null || echo ENCRYPTED > "$f"; done' _ {} +

set -x
# Incident commands key and anchor the timeline with the config's repository.
export KURA_CONFIG="$DEMO/kura.toml"
"$KURA" incident open --title "Ransomware on the demo site" --category ransomware
"$KURA" incident update 1 --real true --scope "all five systems" --damage "files encrypted" \
    --cause "phished admin account" --response "network isolated" --outside-attack true
"$KURA" recover --incident 1 --plan "$DEMO/plan.toml" || true   # refused: the cause is not resolved yet
"$KURA" incident resolve-cause 1 --note "admin account disabled, MFA enforced"
"$KURA" recover --incident 1 --plan "$DEMO/plan.toml" || true   # exit 1: priority 3 (deadline 0) is always late
"$KURA" report --incident 1 --format html --output "$DEMO/report.html"
set +x

for sys in dns db app files wiki; do diff -r "$DEMO/pristine/$sys" "$DEMO/restored/$sys"; done
echo
echo "demo finished: all five systems are restored byte for byte into $DEMO/restored"
echo "the compliance report is at $DEMO/report.html"
