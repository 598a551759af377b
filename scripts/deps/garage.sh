#!/usr/bin/env bash
# Installs Garage (an S3 server) for the remote-site tests, once per machine.
# Skipped when a garage binary is already on PATH, in ~/.cargo/bin or at $KURA_GARAGE.
set -euo pipefail
GARAGE_VERSION=2.5.0
if [ -n "${KURA_GARAGE:-}" ] && [ -x "$KURA_GARAGE" ]; then exit 0; fi
if command -v garage >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/garage" ]; then exit 0; fi
echo "== installing garage $GARAGE_VERSION (several minutes on 2 cores, once per machine)"
# opt-level 1: a test server on loopback does not need -O3, and the build is a large
# part of a fresh machine's CI time.
CARGO_PROFILE_RELEASE_OPT_LEVEL="${KURA_GARAGE_OPT_LEVEL:-1}" CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo install --locked garage --version "$GARAGE_VERSION" --no-default-features --features bundled-libs,sqlite
