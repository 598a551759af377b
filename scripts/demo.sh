#!/usr/bin/env bash
# kura's main job on the embedded default, with nothing but local directories:
# build, create an encrypted repository, back up a sample tree twice (the second
# run is incremental), list, check, and restore with verification.
# Everything lands in ./kura-demo (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
KURA=$PWD/target/release/kura
DEMO=$PWD/kura-demo
rm -rf "$DEMO" && mkdir -p "$DEMO/systems/web/html" "$DEMO/systems/db"
export KURA_REPOSITORY=$DEMO/repo KURA_PASSWORD=demo-passphrase

# A small sample of two "systems".
for i in $(seq 1 200); do echo "<p>page $i of the web site</p>" > "$DEMO/systems/web/html/page$i.html"; done
head -c 20000000 /dev/urandom > "$DEMO/systems/db/data.bin"
seq 1 200000 > "$DEMO/systems/db/rows.txt"
ln -s html/page1.html "$DEMO/systems/web/index.html"

set -x
"$KURA" init
"$KURA" backup "$DEMO/systems" --tag demo
echo "one more row" >> "$DEMO/systems/db/rows.txt"
"$KURA" backup "$DEMO/systems" --tag demo
"$KURA" snapshots
"$KURA" check --read-data
"$KURA" restore latest --target "$DEMO/restored" --verify
diff -r "$DEMO/systems" "$DEMO/restored$DEMO/systems"
set +x
echo "demo finished: the restored copy in $DEMO/restored is identical to $DEMO/systems"
