#!/usr/bin/env bash
# Installs Debian's prometheus, which tests/it/metrics.rs scrapes the daemon's
# /metrics with. Idempotent: does nothing when prometheus is already on PATH.
# Only the binary is used: the test starts its own server on a temporary
# directory; the package's own service is stopped and disabled when present.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# The package's service must not start (it would take port 9090): policy-rc.d
# tells invoke-rc.d to leave services alone during this install.
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  added_policy=1
fi
cleanup() { if [ -n "$added_policy" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus
command -v prometheus >/dev/null
