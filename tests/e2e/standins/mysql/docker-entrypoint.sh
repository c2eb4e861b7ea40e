#!/bin/bash
# Stand-in for the official mysql image's docker-entrypoint.sh, running Debian's MariaDB 10.11. The official
# image's contract, as the chart uses it: arguments starting with '-' go to the server (`mysqld` is accepted for
# `mariadbd`); on an empty data directory: initialize it, set MYSQL_ROOT_PASSWORD (root@localhost and root@'%'),
# create MYSQL_DATABASE, then run /docker-entrypoint-initdb.d/* (*.sh sourced with docker_process_sql defined,
# *.sql piped to it) on a temporary socket-only server, as the official entrypoint does.
set -eo pipefail
shopt -s nullglob
case ${1:-} in
-*) set -- mariadbd "$@" ;;
mysqld)
  shift
  set -- mariadbd "$@"
  ;;
esac
DATADIR=/var/lib/mysql
for a in "$@"; do case $a in --datadir=*) DATADIR=${a#*=} ;; esac; done
SOCKET=/run/mysqld/mysqld.sock

note() { echo "$(date -Is) [mysql stand-in entrypoint]: $*"; }

# What the official entrypoint gives init scripts: SQL on stdin, run as root over the local socket.
docker_process_sql() { # [--dont-use-mysql-root-password] [mariadb client options...] <SQL
  local password=$MYSQL_ROOT_PASSWORD
  if [ "${1:-}" = --dont-use-mysql-root-password ]; then
    password=''
    shift
  fi
  if [ -n "$MYSQL_DATABASE" ]; then set -- --database="$MYSQL_DATABASE" "$@"; fi
  MYSQL_PWD=$password mariadb --protocol=socket -uroot -hlocalhost --socket="$SOCKET" "$@"
}

if [ "$1" = mariadbd ] && [ ! -d "$DATADIR/mysql" ]; then
  [ -n "$MYSQL_ROOT_PASSWORD" ] || {
    echo "MYSQL_ROOT_PASSWORD is required" >&2
    exit 1
  }
  note "initializing $DATADIR"
  mkdir -p "$DATADIR"
  mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal --skip-test-db \
    --skip-name-resolve >/dev/null
  "$@" --skip-networking --socket="$SOCKET" &
  pid=$!
  for _ in $(seq 60); do
    docker_process_sql --dont-use-mysql-root-password --database=mysql -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 1
  done
  pw=${MYSQL_ROOT_PASSWORD//\\/\\\\}
  pw=${pw//\'/\\\'}
  docker_process_sql --dont-use-mysql-root-password --database=mysql <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
${MYSQL_DATABASE:+CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;}
SQL
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
    *.sh)
      note "sourcing $f"
      # shellcheck disable=SC1090 # the chart's init scripts, mounted at run time
      . "$f"
      ;;
    *.sql)
      note "running $f"
      docker_process_sql <"$f"
      ;;
    *) note "ignoring $f" ;;
    esac
  done
  kill "$pid"
  wait "$pid" || true
  note "init done"
fi
exec "$@"
