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
mkdir -p .dev
logfile=.dev/bootstrap.log
echo "bootstrap: installing into $VENV (log: $logfile)"
install() {
  if ! "$@" >>"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2
    echo "bootstrap: failed: $*" >&2
    exit 1
  fi
}
: >"$logfile"
[ -x "$VENV/bin/python" ] || install "$PY" -m venv "$VENV"
install "$VENV/bin/pip" install --quiet --upgrade pip wheel
# torch first, pinned to the CPU build, so nothing pulls CUDA wheels.
install "$VENV/bin/pip" install --quiet "torch==2.13.0"
install "$VENV/bin/pip" install --quiet -e ".[operator,workers,model,train,batch,tracking,spark,services,dev]"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "bootstrap: $VENV ready"
