#!/usr/bin/env bash
# PostgreSQL for local runs and tests.
#   scripts/postgres.sh start   start (creating if needed) a private cluster on 127.0.0.1:$TANDEM_PG_PORT
#                               with trust auth, and the databases `crm` and `erp`
#   scripts/postgres.sh stop    stop that cluster
#   scripts/postgres.sh url     print the admin URL (postgres database)
# When TANDEM_DATABASE_URL is set (an admin URL to an existing server), nothing is started.
# When the development PKI exists ($TANDEM_STATE/pki, made by `tandemctl dev-pki`), the cluster
# also speaks TLS with its server certificate, and `url` asks for sslmode=verify-full.
set -euo pipefail
source "$(dirname "$0")/common.sh"

PGDATA_DIR=$TANDEM_STATE/pg
PKI_DIR=$TANDEM_STATE/pki
PLAIN_URL=postgres://postgres@127.0.0.1:$TANDEM_PG_PORT/postgres
if [ -z "${TANDEM_DATABASE_URL:-}" ] && [ -s "$PKI_DIR/server.pem" ]; then
  ADMIN_URL="$PLAIN_URL?sslmode=verify-full&sslrootcert=$PKI_DIR/ca.pem"
else
  ADMIN_URL=${TANDEM_DATABASE_URL:-$PLAIN_URL}
fi

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if [ -n "${TANDEM_DATABASE_URL:-}" ]; then
    log "using PostgreSQL at TANDEM_DATABASE_URL"
  else
    local bin
    if ! bin=$(pg_bin); then
      log "installing PostgreSQL 15"
      apt_install postgresql-15 || apt_install postgresql
      bin=$(pg_bin) || die "PostgreSQL binaries not found after install"
    fi
    if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
      log "creating a PostgreSQL cluster in $PGDATA_DIR"
      mkdir -p "$PGDATA_DIR"
      if [ "$(id -u)" = 0 ]; then
        chmod 755 "$TANDEM_STATE"
        chown postgres:postgres "$PGDATA_DIR"
      fi
      chmod 700 "$PGDATA_DIR"
      as_owner "$bin/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    fi
    if ! as_owner "$bin/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
      log "starting PostgreSQL on 127.0.0.1:$TANDEM_PG_PORT"
      # fsync off: a development cluster; a killed postgres loses nothing (the OS still has
      # the pages), only a machine crash could.
      as_owner "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 start \
        -o "-p $TANDEM_PG_PORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c full_page_writes=off" >/dev/null
    fi
  fi
  enable_tls
  local db
  for db in crm erp; do
    if [ -z "$(psql "$ADMIN_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      psql "$ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
      log "created database $db"
    fi
  done
}

# enable_tls: with the development PKI present, the cluster serves TLS with its server
# certificate (copied into the data directory, owned by the cluster's user); on at once
# (a reload) and at every later start.
enable_tls() {
  [ -n "${TANDEM_DATABASE_URL:-}" ] && return 0
  [ -s "$PKI_DIR/server.pem" ] || return 0
  if ! cmp -s "$PKI_DIR/server.pem" "$PGDATA_DIR/server.crt" 2>/dev/null; then
    install -m 600 "$PKI_DIR/server.pem" "$PGDATA_DIR/server.crt"
    install -m 600 "$PKI_DIR/server.key" "$PGDATA_DIR/server.key"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA_DIR/server.crt" "$PGDATA_DIR/server.key"
  fi
  if [ "$(psql "$PLAIN_URL" -Atqc 'SHOW ssl')" != on ]; then
    psql "$PLAIN_URL" -qc "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
    log "PostgreSQL serves TLS (certificate from $PKI_DIR)"
  fi
  local deadline=$((SECONDS + 10))
  until psql "$ADMIN_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "PostgreSQL does not answer over TLS at $ADMIN_URL"
    sleep 0.2
  done
}

stop() {
  [ -n "${TANDEM_DATABASE_URL:-}" ] && return 0
  local bin
  bin=$(pg_bin) || return 0
  if as_owner "$bin/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
    log "stopped PostgreSQL"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$ADMIN_URL" ;;
  *) die "usage: $0 start|stop|url" ;;
esac
