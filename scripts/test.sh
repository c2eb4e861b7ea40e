#!/usr/bin/env bash
# README command two and what CI runs: set up everything the suite needs, lint, then run pytest.
# The suite's fixtures start their own servers (scripts/services.sh, scripts/cluster.sh) on free loopback ports,
# and the end-to-end suite (tests/e2e, docs/e2e.md) its one-node cluster with images built here
# (scripts/node-cluster.sh, scripts/images.sh; cached under ~/.cache/sentiment-pipeline). E2E=0 leaves it out.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export E2E="${E2E:-1}"

bash scripts/bootstrap.sh
bash scripts/services.sh install
bash scripts/cluster.sh build
bash scripts/install-helm.sh >/dev/null
bash scripts/install-lint-tools.sh >/dev/null

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports

echo "== tests"
exec .venv/bin/pytest "$@"
