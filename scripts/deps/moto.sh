#!/usr/bin/env bash
# Installs moto 5.2.5 (an S3 server with object lock) in a venv for the object-lock
# tests. Skipped when the venv already has it. The tests look at $KURA_MOTO, else
# ~/.cache/kura-moto/bin/moto_server.
set -euo pipefail
MOTO_VERSION=5.2.5
VENV="${KURA_MOTO_VENV:-$HOME/.cache/kura-moto}"
if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  exit 0
fi
echo "== installing moto $MOTO_VERSION in $VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet "moto[s3]==$MOTO_VERSION" flask flask-cors
