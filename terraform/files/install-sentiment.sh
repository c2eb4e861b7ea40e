#!/usr/bin/env bash
# Provision the VM: pinned k3s and Helm (both checksum-verified), then the sentiment-pipeline chart.
# Run once by cloud-init (runcmd) as root; safe to re-run (`sudo /opt/sentiment/install-sentiment.sh`).
# Settings come from /etc/sentiment/install.env, rendered by Terraform (terraform/cloud-init.yaml.tftpl).
# Progress: /var/log/cloud-init-output.log; success leaves /var/lib/sentiment/installed.
set -euo pipefail

ENV_FILE=${SENTIMENT_INSTALL_ENV:-/etc/sentiment/install.env}
K3S_DOWNLOAD_BASE=${K3S_DOWNLOAD_BASE:-https://github.com/k3s-io/k3s/releases/download}
HELM_DOWNLOAD_BASE=${HELM_DOWNLOAD_BASE:-https://get.helm.sh}
# Only HTTPS downloads (and no redirects to anything else).
FETCH_PROTOCOLS=${FETCH_PROTOCOLS:-=https}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
STATE_DIR=${STATE_DIR:-/var/lib/sentiment}

log() { printf '%s install-sentiment: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# fetch_verified URL SHA256 DEST: download URL and move it to DEST only when its SHA-256 matches.
# A mismatch removes the download, leaves DEST untouched and fails.
fetch_verified() {
  local url=$1 sha=$2 dest=$3 tmp actual
  tmp=$(mktemp "$dest.download.XXXXXX")
  if ! curl --fail --silent --show-error --location --proto "$FETCH_PROTOCOLS" --proto-redir "$FETCH_PROTOCOLS" \
    --retry 5 --retry-delay 3 --connect-timeout 20 --output "$tmp" "$url"; then
    rm -f "$tmp"
    log "download failed: $url"
    return 1
  fi
  actual=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$actual" != "$sha" ]; then
    rm -f "$tmp"
    log "checksum mismatch for $url: expected $sha, got $actual; refusing it"
    return 1
  fi
  mv -f "$tmp" "$dest"
}

# has_sha256 FILE SHA256: true when FILE exists with that checksum (makes re-runs skip finished steps).
has_sha256() {
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

install_k3s() {
  local bin="$BIN_DIR/k3s"
  if has_sha256 "$bin" "$K3S_SHA256"; then
    log "k3s $K3S_VERSION already installed"
  else
    log "installing k3s $K3S_VERSION"
    # The release tag's '+' is '%2B' in the download URL.
    fetch_verified "$K3S_DOWNLOAD_BASE/${K3S_VERSION//+/%2B}/k3s" "$K3S_SHA256" "$bin"
    chmod 0755 "$bin"
  fi
  for tool in kubectl crictl ctr; do
    ln -sf k3s "$BIN_DIR/$tool"
  done
  systemctl daemon-reload
  systemctl enable --now k3s.service
  log "waiting for the Kubernetes API and the node"
  local deadline=$((SECONDS + 600))
  until "$bin" kubectl get --raw=/readyz >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || {
      log "k3s API not ready after 600 s"
      return 1
    }
    sleep 3
  done
  "$bin" kubectl wait --for=condition=Ready node --all --timeout=300s
}

install_helm() {
  local bin="$BIN_DIR/helm" work
  if [ -x "$bin" ] && "$bin" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
    log "helm $HELM_VERSION already installed"
    return 0
  fi
  log "installing helm $HELM_VERSION"
  work=$(mktemp -d)
  fetch_verified "$HELM_DOWNLOAD_BASE/helm-$HELM_VERSION-linux-amd64.tar.gz" "$HELM_SHA256" "$work/helm.tar.gz"
  tar -xzf "$work/helm.tar.gz" -C "$work" linux-amd64/helm
  install -m 0755 "$work/linux-amd64/helm" "$bin"
  rm -rf "$work"
}

# The administrator's own kubeconfig (0600), so `kubectl` works over SSH without sudo and the
# kubeconfig can be fetched without root (see the Terraform output `kubeconfig_command`).
share_kubeconfig() {
  local home
  home=$(getent passwd "$ADMIN_USER" | cut -d: -f6)
  install -d -m 0700 -o "$ADMIN_USER" -g "$ADMIN_USER" "$home/.kube"
  install -m 0600 -o "$ADMIN_USER" -g "$ADMIN_USER" /etc/rancher/k3s/k3s.yaml "$home/.kube/config"
}

install_chart() {
  export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
  log "installing chart $CHART_REPOSITORY/sentiment-pipeline $CHART_VERSION into $CHART_NAMESPACE"
  "$BIN_DIR/helm" upgrade --install sentiment-pipeline "$CHART_REPOSITORY/sentiment-pipeline" \
    --version "$CHART_VERSION" --namespace "$CHART_NAMESPACE" --create-namespace \
    --values /etc/sentiment/values-base.yaml --values /etc/sentiment/values-extra.yaml \
    --wait --timeout 20m
}

main() {
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  : "${K3S_VERSION:?} ${K3S_SHA256:?} ${HELM_VERSION:?} ${HELM_SHA256:?} ${ADMIN_USER:?}"
  : "${CHART_REPOSITORY:?} ${CHART_VERSION:?} ${CHART_NAMESPACE:?}"
  install_k3s
  install_helm
  share_kubeconfig
  install_chart
  install -d -m 0755 "$STATE_DIR"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$STATE_DIR/installed"
  log "done"
}

# Sourcing the file (tests) defines the functions without running anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
