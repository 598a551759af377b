#!/usr/bin/env bash
# Runs kura's whole test suite on a fresh machine: formatting, lints, unit,
# property and integration tests. CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain components the checks need (no-ops when already installed).
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# Servers and browsers the integration tests start themselves. Each script is
# idempotent and skips the install when the tool is already there. Garage is
# compiled from crates.io on a fresh machine (the longest step): it builds in the
# background while kura's own lints and test build run, so that the serial phases
# of one build (linking, the largest crates) leave the second core to the other.
garage_log=$(mktemp)
log=$(mktemp)
trap 'rm -f "$garage_log" "$log"' EXIT
./scripts/deps/garage.sh >"$garage_log" 2>&1 &
garage_pid=$!
for dep in scripts/deps/*.sh; do
  [ "$dep" = scripts/deps/garage.sh ] && continue
  echo "== $dep"
  bash "$dep"
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (build)"
# Library, binary and integration tests. Benches and examples are not built here:
# clippy --all-targets above already type-checks them, and building them in test
# mode (criterion and all) cost minutes of CI for no test.
cargo test --workspace --locked --lib --bins --tests --no-run

echo "== scripts/deps/garage.sh"
if ! wait "$garage_pid"; then
  cat "$garage_log"
  echo "installing garage failed" >&2
  exit 1
fi
tail -n 3 "$garage_log"

echo "== cargo test"
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one result line each).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
