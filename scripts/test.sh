#!/usr/bin/env bash
# `make test`: provision PostgreSQL and the broker binary, build, run every test.
# Tests create their own databases (test_*) and start their own brokers on free ports, so
# they run beside `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

# The test build has the crash points of the fault-injection tests (tests/tests/failpoints.rs);
# release builds leave them out.
features=tandem-common/failpoints
build_deps
log "building"
cargo build --workspace --bins --locked --features "$features"

# The development PKI (as `make run` makes it): the shared PostgreSQL then speaks TLS and the
# tests connect with sslmode=verify-full.
target/debug/tandemctl dev-pki "$TANDEM_STATE/pki"
scripts/postgres.sh start
scripts/broker.sh install
command -v stunnel4 >/dev/null || apt_install stunnel4  # TLS in front of the test broker
# Network partitions (the chaos suite and the pods test) need ip and nft, and root.
if [ "$(id -u)" = 0 ]; then
  command -v ip >/dev/null || apt_install iproute2
  command -v nft >/dev/null || apt_install nftables
  export CHAOS_PARTITIONS="${CHAOS_PARTITIONS:-1}"
fi
TANDEM_TEST_DATABASE_URL=$(scripts/postgres.sh url)
export TANDEM_TEST_DATABASE_URL TANSU_BIN

# Throw-away databases of earlier runs.
psql "$TANDEM_TEST_DATABASE_URL" -Atqc \
  "SELECT format('DROP DATABASE IF EXISTS %I;', datname) FROM pg_database WHERE datname LIKE 'test\_%'" \
  | psql "$TANDEM_TEST_DATABASE_URL" -q >/dev/null

log "checking the Kubernetes manifests"
tests/k8s/render.sh
log "running the local overlay's pods in network namespaces"
tests/k8s-run/run.sh --bin-dir target/debug

log "testing"
cargo test --workspace --locked --features "$features" "$@"
