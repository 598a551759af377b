#!/usr/bin/env bash
# Installs Garage (an S3 server) for the remote-site tests, once per machine.
# Skipped when a garage binary is already on PATH, in ~/.cargo/bin or at $KURA_GARAGE.
set -euo pipefail
GARAGE_VERSION=2.5.0
if [ -n "${KURA_GARAGE:-}" ] && [ -x "$KURA_GARAGE" ]; then exit 0; fi
if command -v garage >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/garage" ]; then exit 0; fi
echo "== installing garage $GARAGE_VERSION (about 8 minutes on 2 cores, once per machine)"
cargo install --locked garage --version "$GARAGE_VERSION" --no-default-features --features bundled-libs,sqlite
