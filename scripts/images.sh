#!/usr/bin/env bash
# Container images of the project, built from its own Dockerfiles, with a Docker engine or without one.
#
#   scripts/images.sh build [IMAGE...]   build images (default: operator worker); IMAGE is one of
#                                        operator worker worker-torch the project's images (docker/*.Dockerfile;
#                                                                     worker: the slim onnx-int8 CPU image, the
#                                                                     default; worker-torch: target torch)
#                                        standins                     data-plane stand-ins of the e2e suite
#                                                                     (tests/e2e/standins/README.md)
#                                        pause                        the pod sandbox image of the one-node cluster
#   scripts/images.sh import [IMAGE...]  copy built images into the one-node cluster's containerd
#                                        (scripts/node-cluster.sh; default: all of them); unchanged ones are skipped
#   scripts/images.sh refs [IMAGE...]    print the image references
#   scripts/images.sh sizes [IMAGE...]   print each image's size
#   scripts/images.sh prune              remove untagged images (superseded ones and the layer cache; buildah's
#                                        store grows by the changed layers of each rebuild: MBs for code,
#                                        GBs when pyproject.toml changes the dependency layers;
#                                        `build` prunes by itself when the store or the free disk crosses
#                                        IMAGES_STORE_MAX_GB / IMAGES_MIN_FREE_GB)
#
# Builders: with a Docker engine that answers (`docker info`), `docker build`. Without one, buildah (installed from
# Debian when missing), daemonless: the Dockerfiles' base image (FROM python:3.11.13-slim-bookworm) cannot be pulled
# here, so a local one is made once with debootstrap (Debian bookworm minbase + Debian's python3.11) and tagged with
# that name; builds then run with `--pull=never --layers` (the layer cache lives in buildah's store), and their RUN
# steps see the host's pip configuration, the local wheel/index folders it names and the CA bundle, read-only,
# so pip inside the build reaches the same package sources as pip on the host. Same Dockerfiles either way.
#
# Settings (all optional):
#   IMAGE_BUILDER      auto (default), docker or buildah
#   IMAGE_REGISTRY     repository prefix of the project's images (default ghcr.io/sentiment-pipeline)
#   IMAGE_TAG          their tag (default: the chart's appVersion, which is what the chart deploys by default)
#   IMAGE_BUILD_ARGS   extra `--build-arg K=V ...` for the project's images (e.g. TORCH_INDEX_URL=...)
#   WORKER_DOCKERFILE  Dockerfile of the worker image (default docker/worker.Dockerfile)
#   SENTIMENT_CACHE    cache root (default ~/.cache/sentiment-pipeline): buildah's store, the base rootfs
#   DEBIAN_MIRROR      mirror debootstrap uses (default http://deb.debian.org/debian)
#   IMAGES_STORE_MAX_GB, IMAGES_MIN_FREE_GB   buildah: prune before a build above this store size (default 30)
#                      or below this much free disk (default 25)
#   NODE_DIR           state folder of the one-node cluster (import; default .dev/node, see node-cluster.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${SENTIMENT_CACHE:-$HOME/.cache/sentiment-pipeline}
IMAGES_CACHE=$CACHE_ROOT/images
IMAGE_REGISTRY=${IMAGE_REGISTRY:-ghcr.io/sentiment-pipeline}
IMAGE_TAG=${IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/sentiment-pipeline/Chart.yaml")}
WORKER_DOCKERFILE=${WORKER_DOCKERFILE:-docker/worker.Dockerfile}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm
STANDINS=$ROOT/tests/e2e/standins
# Stand-in images: local names only (localhost/...), never mistaken for the images they stand in for.
STANDIN_PREFIX=localhost/sentiment-e2e
PAUSE_REF=$STANDIN_PREFIX/pause:3.6
ALL_IMAGES=(operator worker worker-torch standins pause)

log() { printf 'images: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ref_of() { # image -> reference(s)
  case $1 in
  operator | worker) echo "$IMAGE_REGISTRY/$1:$IMAGE_TAG" ;;
  worker-torch) echo "$IMAGE_REGISTRY/worker:$IMAGE_TAG-torch" ;;
  standins) printf '%s\n' "$STANDIN_PREFIX/kafka:tansu" "$STANDIN_PREFIX/mongodb:secantus" \
    "$STANDIN_PREFIX/mysql:mariadb" ;;
  pause) echo "$PAUSE_REF" ;;
  *) die "unknown image '$1' (one of: ${ALL_IMAGES[*]})" ;;
  esac
}

builder() {
  case ${IMAGE_BUILDER:-auto} in
  docker | buildah) echo "$IMAGE_BUILDER" ;;
  auto) if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; else echo buildah; fi ;;
  *) die "IMAGE_BUILDER must be auto, docker or buildah" ;;
  esac
}

# ----------------------------------------------------------------------------------------------------- buildah
BUILDAH=(buildah --root "$IMAGES_CACHE/storage" --runroot "$IMAGES_CACHE/run" --storage-driver overlay)

ensure_buildah() {
  local missing=() p
  for p in buildah debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; }
}

# RUN steps of buildah builds: chroot isolation on the host's network; the host's pip settings (all levels merged
# into one file mounted as /etc/pip.conf), every existing folder or file those settings name, and the CA bundle,
# all read-only at the same paths.
BUILD_VOLUMES=()
build_volumes() {
  BUILD_VOLUMES=(--isolation chroot)
  local conf=$IMAGES_CACHE/pip.conf
  mkdir -p "$IMAGES_CACHE"
  {
    echo "[global]"
    pip config list 2>/dev/null | sed -n "s/^\(global\|:env:\)\.\([a-z-]*\)='\(.*\)'$/\2 = \3/p" | sort -u -t= -k1,1
  } >"$conf"
  BUILD_VOLUMES+=(--volume "$conf:/etc/pip.conf:ro")
  local paths=() p
  mapfile -t paths < <(grep -oE '(file://)?/[^ ]+' "$conf" | sed 's|^file://||' | sort -u)
  for p in "${paths[@]}" /etc/ssl/certs/ca-certificates.crt; do
    # an index URL names .../simple: mount the folder above it (its files/ live next to it)
    case $p in */simple | */simple/) p=$(dirname "${p%/}") ;; esac
    [ -e "$p" ] && BUILD_VOLUMES+=(--volume "$p:$p:ro")
  done
}

# The Dockerfiles' FROM, as a local image: Debian bookworm minbase + python3.11 + venv (debootstrap), cached.
base_ref() { # the FROM of the project's Dockerfiles, fully qualified
  local from
  from=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$ROOT/docker/operator.Dockerfile" | head -n1)
  case $from in
  */*/*) echo "$from" ;;
  */*) echo "docker.io/$from" ;;
  *) echo "docker.io/library/$from" ;;
  esac
}

ensure_base() {
  local ref
  ref=$(base_ref)
  if "${BUILDAH[@]}" inspect --type image "$ref" >/dev/null 2>&1; then return 0; fi
  local rootfs=$IMAGES_CACHE/rootfs-$DEBIAN_SUITE
  if [ ! -x "$rootfs/usr/bin/python3" ]; then
    log "debootstrap $DEBIAN_SUITE (minbase + python3, about a minute) into $rootfs"
    rm -rf "$rootfs" "$rootfs.tmp"
    mkdir -p "$rootfs.tmp"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      "$DEBIAN_SUITE" "$rootfs.tmp" "$DEBIAN_MIRROR" >"$IMAGES_CACHE/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $IMAGES_CACHE/debootstrap.log"
    chroot "$rootfs.tmp" apt-get clean
    rm -rf "$rootfs.tmp"/var/lib/apt/lists/*
    mv "$rootfs.tmp" "$rootfs"
  fi
  log "base image $ref (Debian $DEBIAN_SUITE's python3, from $rootfs)"
  local c m
  c=$("${BUILDAH[@]}" from scratch)
  m=$("${BUILDAH[@]}" mount "$c")
  cp -a "$rootfs/." "$m/"
  "${BUILDAH[@]}" umount "$c" >/dev/null
  "${BUILDAH[@]}" config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 \
    --label org.opencontainers.image.description="local stand-in for $ref: Debian $DEBIAN_SUITE minbase + python3" "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$ref" >/dev/null
}

# -------------------------------------------------------------------------------------------------------- build
build_one() { # builder dockerfile context ref [build args...]
  local b=$1 file=$2 context=$3 ref=$4
  shift 4
  local t0=$SECONDS
  log "building $ref from ${file#"$ROOT"/} with $b"
  if [ "$b" = docker ]; then
    docker build -f "$file" -t "$ref" "$@" "$context"
  else
    "${BUILDAH[@]}" bud --pull=never --layers "${BUILD_VOLUMES[@]}" -f "$file" -t "$ref" "$@" "$context"
  fi
  log "built $ref in $((SECONDS - t0)) s"
}

project_build_args() { # builder
  # shellcheck disable=SC2086 # IMAGE_BUILD_ARGS is a word list of --build-arg K=V
  printf '%s\n' --build-arg "VERSION=$IMAGE_TAG" ${IMAGE_BUILD_ARGS:-}
  # The worker Dockerfile installs torch from TORCH_INDEX_URL (PyTorch's index by default). Where that host does
  # not resolve and the host's pip is configured with a local index, use it (pip would retry for minutes first).
  case " ${IMAGE_BUILD_ARGS:-} " in *" TORCH_INDEX_URL="*) return 0 ;; esac
  if [ "$1" = buildah ] && ! getent hosts download.pytorch.org >/dev/null 2>&1; then
    local index
    index=$(grep -oE 'file:///[^ ]+' "$IMAGES_CACHE/pip.conf" | while read -r u; do
      [ -d "${u#file://}" ] && echo "$u"
    done | head -n1)
    if [ -n "$index" ]; then
      log "download.pytorch.org does not resolve: torch from the host's pip sources ($index and find-links)"
      printf '%s\n' --build-arg "TORCH_INDEX_URL=$index"
    fi
  fi
}

pause_image() { # b: the Kubernetes source's own pause.c, linked statically
  local b=$1 dir=$IMAGES_CACHE/pause
  mkdir -p "$dir"
  if [ ! -x "$dir/pause" ]; then
    bash "$ROOT/scripts/cluster.sh" sources >/dev/null
    local src
    src=$(find "$CACHE_ROOT"/kube-*/downloads/src -name "kubernetes_*.orig.tar.gz" | head -n1)
    tar -xzOf "$src" --wildcards '*build/pause/linux/pause.c' >"$dir/pause.c"
    gcc -Os -static -DVERSION=3.6-local -o "$dir/pause" "$dir/pause.c"
    strip "$dir/pause"
  fi
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$dir/Containerfile"
  build_one "$b" "$dir/Containerfile" "$dir" "$PAUSE_REF"
}

build() {
  local images=("$@") b
  [ ${#images[@]} -gt 0 ] || images=(operator worker)
  b=$(builder)
  if [ "$b" = buildah ]; then
    ensure_buildah
    keep_room
    ensure_base
    build_volumes
  fi
  local args=() image
  mapfile -t args < <(project_build_args "$b")
  for image in "${images[@]}"; do
    case $image in
    operator) build_one "$b" "$ROOT/docker/operator.Dockerfile" "$ROOT" "$(ref_of operator)" "${args[@]}" ;;
    worker) build_one "$b" "$ROOT/$WORKER_DOCKERFILE" "$ROOT" "$(ref_of worker)" "${args[@]}" ;;
    worker-torch)
      build_one "$b" "$ROOT/$WORKER_DOCKERFILE" "$ROOT" "$(ref_of worker-torch)" --target torch "${args[@]}"
      ;;
    standins)
      build_one "$b" "$STANDINS/kafka/Containerfile" "$STANDINS/kafka" "$STANDIN_PREFIX/kafka:tansu"
      build_one "$b" "$STANDINS/mongodb/Containerfile" "$STANDINS/mongodb" "$STANDIN_PREFIX/mongodb:secantus"
      build_one "$b" "$STANDINS/mysql/Containerfile" "$STANDINS/mysql" "$STANDIN_PREFIX/mysql:mariadb"
      ;;
    pause) pause_image "$b" ;;
    *) ref_of "$image" >/dev/null ;;
    esac
  done
}

# buildah's store grows by the changed layers of every rebuild (the dependency venvs, GBs, when pyproject.toml
# changes; the project's own layer, MBs, otherwise) and the disk may be shared: prune it before a build when it is over IMAGES_STORE_MAX_GB or the disk has less than
# IMAGES_MIN_FREE_GB free (an e2e run needs about 15 GB beyond the store: containerd's copy of the images, unpacked,
# and the export it imports from). Pruning costs a full rebuild, so it happens only then.
keep_room() {
  local store=$IMAGES_CACHE/storage free used
  [ -d "$store" ] || return 0
  free=$(df --output=avail -BG "$IMAGES_CACHE" | tail -1 | tr -dc 0-9)
  used=$(du -sx -BG "$store" 2>/dev/null | cut -f1 | tr -dc 0-9)
  if [ "$free" -lt "${IMAGES_MIN_FREE_GB:-25}" ] || [ "$used" -gt "${IMAGES_STORE_MAX_GB:-30}" ]; then
    log "store ${used} GB, disk ${free} GB free: pruning untagged images (this build redoes cached steps)"
    prune buildah
    log "store $(du -sx -BG "$store" | cut -f1), disk $(df --output=avail -BG "$IMAGES_CACHE" | tail -1 | tr -d ' ') free"
  fi
}

# Untagged images: those a rebuilt tag left behind, and the build cache. Not automatic: it also drops the cached
# last step of each build stage (nothing refers to it), so the next build redoes those steps.
prune() { # builder
  if [ "$1" = docker ]; then
    docker image prune -f >/dev/null
  else
    "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  fi
}

# ------------------------------------------------------------------------------------------------------- import
image_id() { # ref -> image id in the builder's store
  if [ "$(builder)" = docker ]; then
    docker image inspect --format '{{.Id}}' "$1"
  else
    "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$1"
  fi
}

import() {
  local images=("$@") refs=() image
  [ ${#images[@]} -gt 0 ] || images=("${ALL_IMAGES[@]}")
  for image in "${images[@]}"; do
    mapfile -t -O ${#refs[@]} refs < <(ref_of "$image")
  done
  local sock
  sock=$(bash "$ROOT/scripts/node-cluster.sh" socket)
  [ -S "$sock" ] || die "the one-node cluster's containerd is not running ($sock): scripts/node-cluster.sh up"
  local ctr=(ctr -a "$sock" -n k8s.io) stamps=${sock%/*}/imported ref id stamp archive t0
  mkdir -p "$stamps" "$IMAGES_CACHE/archives"
  for ref in "${refs[@]}"; do
    id=$(image_id "$ref" 2>/dev/null) || {
      log "skipping $ref: not built"
      continue
    }
    stamp=$stamps/$(echo "$ref" | tr '/:' '__')
    if [ "$(cat "$stamp" 2>/dev/null)" = "$id" ] && "${ctr[@]}" images check "name==$ref" 2>/dev/null | grep -q complete; then
      continue
    fi
    t0=$SECONDS
    archive=$IMAGES_CACHE/archives/$(echo "$ref" | tr '/:' '__').tar
    rm -f "$archive"
    if [ "$(builder)" = docker ]; then
      docker save -o "$archive" "$ref"
    else
      "${BUILDAH[@]}" push -q "$ref" "docker-archive:$archive:$ref"
    fi
    "${ctr[@]}" images import "$archive" >/dev/null
    rm -f "$archive"
    echo "$id" >"$stamp"
    log "imported $ref in $((SECONDS - t0)) s"
  done
}

sizes() {
  local images=("$@") image ref
  [ ${#images[@]} -gt 0 ] || images=(operator worker worker-torch)
  for image in "${images[@]}"; do
    while read -r ref; do
      if [ "$(builder)" = docker ]; then
        printf '%s\t%s\n' "$ref" "$(docker image inspect --format '{{.Size}}' "$ref" 2>/dev/null || echo 'not built')"
      else
        printf '%s\t%s\n' "$ref" "$("${BUILDAH[@]}" images --format '{{.Size}}' "$ref" 2>/dev/null || echo 'not built')"
      fi
    done < <(ref_of "$image")
  done
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
build) build "$@" ;;
import) import "$@" ;;
refs) for i in "${@:-${ALL_IMAGES[@]}}"; do ref_of "$i"; done ;;
sizes) sizes "$@" ;;
prune) prune "$(builder)" ;;
*)
  echo "usage: $0 build|import|refs|sizes|prune [IMAGE...]   (IMAGE: ${ALL_IMAGES[*]})" >&2
  exit 2
  ;;
esac
