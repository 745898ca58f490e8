#!/usr/bin/env bash
# `make run`: provision what is missing (PostgreSQL, the broker), build, and run the CRM, the
# ERP and the bridge in the foreground with prefixed logs. Ctrl-C stops everything this script
# started, in order: the bridge, the services, then the broker and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

pg_was_running=false
broker_was_running=false
if [ -z "${TANDEM_DATABASE_URL:-}" ] && (exec 3<>"/dev/tcp/127.0.0.1/$TANDEM_PG_PORT") 2>/dev/null; then
  pg_was_running=true
fi
if [ -z "${KAFKA_BROKERS:-}" ] && (exec 3<>"/dev/tcp/127.0.0.1/${TANDEM_BROKER_PORT:-9092}") 2>/dev/null; then
  broker_was_running=true
fi

log "building"
build_deps
cargo build --workspace --bins --quiet

# A development CA, certificates and token signing key, made once under the state directory:
# TLS on every gRPC port, mutual TLS on the internal ones, tokens on the public APIs.
pki=$TANDEM_STATE/pki
target/debug/tandemctl dev-pki "$pki"
# PostgreSQL (with TLS from the same PKI) and the broker.
scripts/postgres.sh start
scripts/broker.sh start
for svc in CRM ERP; do
  for port in GRPC SYNC; do
    export "${svc}__${port}__TLS__CERT_FILE=$pki/server.pem" "${svc}__${port}__TLS__KEY_FILE=$pki/server.key"
  done
  export "${svc}__SYNC__TLS__CLIENT_CA_FILE=$pki/ca.pem" "${svc}__AUTH__KEYS=$pki/jwks.json"
done
# caller_env IDENTITY: the settings of a caller of the internal ports (the bridge, tandemctl).
caller_env() {
  local target
  for target in CRM ERP; do
    printf 'export BRIDGE__%s__TLS__CA_FILE=%q BRIDGE__%s__TLS__CERT_FILE=%q BRIDGE__%s__TLS__KEY_FILE=%q BRIDGE__%s__TLS__DOMAIN=localhost\n' \
      "$target" "$pki/ca.pem" "$target" "$pki/$1.pem" "$target" "$pki/$1.key" "$target"
  done
}
{
  caller_env tandemctl
  printf 'export TANDEM_PKI_DIR=%q TANDEM_CA_FILE=%q\n' "$pki" "$pki/ca.pem"
} > "$pki/client.env"

# One local bridge replica: it takes its partitions itself (config/local/bridge.toml).
export BRIDGE_CONFIG=${BRIDGE_CONFIG:-$PWD/config/local/bridge.toml}
brokers=${KAFKA_BROKERS:-127.0.0.1:${TANDEM_BROKER_PORT:-9092}}
export CRM__KAFKA__BROKERS=$brokers ERP__KAFKA__BROKERS=$brokers BRIDGE__KAFKA__BROKERS=$brokers
if [ -n "${TANDEM_DATABASE_URL:-}" ]; then
  base=${TANDEM_DATABASE_URL%/*}
  export CRM__DATABASE__URL=$base/crm ERP__DATABASE__URL=$base/erp
else
  tls="sslmode=verify-full&sslrootcert=$pki/ca.pem"
  base=postgres://postgres@127.0.0.1:$TANDEM_PG_PORT
  export CRM__DATABASE__URL="$base/crm?$tls" ERP__DATABASE__URL="$base/erp?$tls"
fi

pids=()
start() { # name binary [environment file [arguments...]]
  local name=$1 bin=$2 envfile=${3:-/dev/null}
  shift $(($# < 3 ? $# : 3))
  # The log prefixer ignores Ctrl-C so the last lines of a stopping process still show.
  (source "$envfile"; exec "target/debug/$bin" "$@") \
    > >(trap '' INT TERM; exec sed -u "s/^/$(printf '%-6s' "$name")| /") 2>&1 &
  pids+=($!)
}

stopping=false
stop_all() {
  $stopping && return
  stopping=true
  log "stopping"
  local pid
  # The bridge first (it commits what it applied), then the services.
  for pid in $(printf '%s\n' "${pids[@]}" | tac); do
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  $broker_was_running || scripts/broker.sh stop
  $pg_was_running || scripts/postgres.sh stop
  log "stopped"
}
interrupted=false
trap 'interrupted=true' INT TERM

# Traces: a local collector writes every span to a file; `tandemctl trace ID` prints a
# change's journey from it. TANDEM_TRACES=off leaves it out.
if [ "${TANDEM_TRACES:-}" != off ]; then
  traces=${TANDEM_TRACES:-$TANDEM_STATE/traces.jsonl}
  export CRM__TELEMETRY__OTLP_ENDPOINT=${CRM__TELEMETRY__OTLP_ENDPOINT:-http://127.0.0.1:4317}
  export ERP__TELEMETRY__OTLP_ENDPOINT=${ERP__TELEMETRY__OTLP_ENDPOINT:-http://127.0.0.1:4317}
  export BRIDGE__TELEMETRY__OTLP_ENDPOINT=${BRIDGE__TELEMETRY__OTLP_ENDPOINT:-http://127.0.0.1:4317}
  printf 'export TANDEM_TRACES=%q\n' "$traces" >> "$pki/client.env"
  start traces tandemctl /dev/null trace-collector --listen 127.0.0.1:4317 --out "$traces"
fi
start crm crm-service
start erp erp-service
caller_env sync-bridge > "$pki/bridge.env"
start bridge sync-bridge "$pki/bridge.env"
log "CRM gRPC 127.0.0.1:50051 (sync :50061, http :9101), ERP gRPC 127.0.0.1:50052 (sync :50062, http :9102), bridge http :9103"
log "in another shell: source $pki/client.env; export TANDEM_TOKEN=\$(target/debug/tandemctl token --role sales)"
log "then: tools/grpc.sh 127.0.0.1:50051 list; tandemctl trace <an id> shows a change's journey; Ctrl-C stops everything"
# Ctrl-C (or SIGTERM) ends the wait; so does any process exiting on its own. Either way,
# stop the rest; only the second is a failure.
wait -n "${pids[@]}" || true
stop_all
$interrupted && exit 0
log "a process exited on its own"
exit 1
