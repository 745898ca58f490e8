#!/usr/bin/env bash
# The local Kafka-protocol broker (tansu, built with cargo install), on 127.0.0.1 only.
#   scripts/broker.sh install   build tansu once into $TANDEM_CACHE (about 15 minutes cold)
#   scripts/broker.sh start     install if needed, start on 127.0.0.1:${TANDEM_BROKER_PORT:-9092}
#                               with the storage TANDEM_BROKER_STORAGE names (below)
#   scripts/broker.sh stop      stop the broker this script started
# When KAFKA_BROKERS is set (an existing Kafka), start and stop do nothing.
set -euo pipefail
SCRIPTS=$(dirname "$0")
source "$SCRIPTS/common.sh"

PORT=${TANDEM_BROKER_PORT:-9092}
DIR=$TANDEM_STATE/broker
PIDFILE=$DIR/tansu.pid
# tansu's storage engine: SQLite in $DIR. Not `memory://`: tansu 0.6's memory engine acknowledged
# 20,000 produced records and kept 19,420 (3 partitions, one producer, 5 requests in flight),
# while SQLite kept all 20,000 (docs/runbook.md, "Local broker").
STORAGE=${TANDEM_BROKER_STORAGE:-sqlite://tansu.db}

install() {
  if [ -x "$TANSU_BIN" ]; then return 0; fi
  command -v cargo >/dev/null || die "cargo is needed to build the broker"
  log "building tansu $TANSU_VERSION into $TANDEM_CACHE (once; about 15 minutes)"
  mkdir -p "$TANDEM_CACHE"
  # Its default features have no storage engine: dynostore + libsql give durable sqlite.
  CARGO_TARGET_DIR="$TANDEM_CACHE/tansu-build" cargo install tansu --version "$TANSU_VERSION" \
    --locked --features dynostore,libsql --root "$TANDEM_CACHE/tansu-$TANSU_VERSION" --quiet
  rm -rf "$TANDEM_CACHE/tansu-build"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then
    log "using Kafka at KAFKA_BROKERS=$KAFKA_BROKERS"
    return 0
  fi
  install
  mkdir -p "$DIR"
  if running; then index_headers; return 0; fi
  log "starting tansu on 127.0.0.1:$PORT (storage $STORAGE)"
  # tansu resolves sqlite:// paths against its working directory. setsid: a terminal's Ctrl-C
  # must not reach the broker before the processes that still need it have stopped.
  (cd "$DIR" && exec setsid "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" \
      --storage-engine "$STORAGE" >>"$DIR/tansu.log" 2>&1) &
  echo $! >"$PIDFILE"
  wait_for_port 127.0.0.1 "$PORT" 30 || die "broker did not start; see $DIR/tansu.log"
  index_headers
}

# tansu 0.6 creates its table of record headers without an index; a fetch then scans every
# header stored for each record it returns (scripts/tansu_index.py says more).
index_headers() {
  if [[ "$STORAGE" == sqlite://* ]]; then
    "$SCRIPTS/tansu_index.py" "$DIR/${STORAGE#sqlite://}" || die "could not index tansu's headers"
  fi
}

stop() {
  if running; then
    kill "$(cat "$PIDFILE")"
    rm -f "$PIDFILE"
    log "stopped the broker"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 install|start|stop" ;;
esac
