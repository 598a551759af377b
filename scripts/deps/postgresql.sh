#!/usr/bin/env bash
# Installs PostgreSQL (Debian's `postgresql` package) for the test that backs up a
# real database with `kura backup --stdin-from-command -- pg_dump ...`
# (tests/it/postgres.rs). Skipped when initdb and pg_dump are already there. The
# test creates its own throwaway cluster; the package's default cluster is unused.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install PostgreSQL (initdb, pg_ctl, pg_dump, pg_restore) by hand; the test skips meanwhile"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "== installing postgresql"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
