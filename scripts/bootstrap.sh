#!/usr/bin/env bash
# Create .venv and install the project with every extra (idempotent; re-runs only when pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip wheel
# torch first, pinned to the CPU build, so nothing pulls CUDA wheels.
"$VENV/bin/pip" install --quiet "torch==2.13.0"
"$VENV/bin/pip" install --quiet -e ".[operator,workers,model,train,services,dev]"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "bootstrap: $VENV ready"
