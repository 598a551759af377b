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
# The S3 servers the remote-site tests start (no-ops when already installed).
./scripts/deps/garage.sh
./scripts/deps/moto.sh

# Servers and browsers the integration tests start themselves (each script is
# idempotent and skips the install when the tool is already there).
for dep in scripts/deps/*.sh; do
  echo "== $dep"
  bash "$dep"
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Library, binary and integration tests. Benches and examples are not built here:
# clippy --all-targets above already type-checks them, and building them in test
# mode (criterion and all) cost minutes of CI for no test.
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one result line each).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
