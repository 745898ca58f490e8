# Tandem: `make run` and `make test` provision what they need on a fresh machine.
.PHONY: run test lint fmt build provision stop bench bench-scale chaos drill fuzz

# What cargo needs beyond the toolchain (OpenSSL's headers for librdkafka); installed if missing.
BUILD_DEPS = bash -c 'source scripts/common.sh && build_deps'

help: ## This list of targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

run: ## Provision, build and run the whole stack in the foreground (Ctrl-C stops it)
	scripts/run.sh

test: ## Everything CI runs: unit, integration and end-to-end tests on real parts
	scripts/test.sh

lint: ## rustfmt check + clippy with warnings as errors; the bridge links no database driver; no tonic in domain code
	$(BUILD_DEPS)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked --features tandem-common/failpoints -- -D warnings
	cargo clippy -p sync-bridge --all-targets --locked -- -D warnings
	@# As the image builds it: without dev-dependencies, whose features would hide a module
	@# that needs the database feature.
	cargo clippy -p sync-bridge --locked -- -D warnings
	@! cargo tree -p sync-bridge -e normal --locked | grep -q ' sqlx ' || \
	  { echo "sync-bridge links sqlx: tandem-common's database feature leaked into it"; exit 1; }
	@! grep -rnE --include=*.rs '^[^/]*\btonic(_types)?::' crm-service/src erp-service/src \
	  | grep -v -e '/grpc/' -e '/app.rs:' || \
	  { echo "tonic in a service's domain code: map errors in grpc/, validate with tandem_common::validation"; exit 1; }

fmt:
	cargo fmt --all

build:
	$(BUILD_DEPS)
	cargo build --workspace --bins --locked

provision: ## Start PostgreSQL and install the broker without running anything
	scripts/postgres.sh start
	scripts/broker.sh install

stop: ## Stop the PostgreSQL cluster and broker started by the scripts
	scripts/broker.sh stop
	scripts/postgres.sh stop

bench: ## Benchmarks with same-run baselines; writes BENCHMARKS.md and bench-results.json (not part of test)
	scripts/postgres.sh start
	scripts/broker.sh install
	$(BUILD_DEPS)
	cargo build --release --bins --locked
	bash -c 'source scripts/common.sh && url=$$(scripts/postgres.sh url) && \
	  psql "$$url" -Atqc "SELECT format('"'"'DROP DATABASE IF EXISTS %I;'"'"', datname) FROM pg_database WHERE datname LIKE '"'"'test\_bench%'"'"'" | psql "$$url" -q >/dev/null && \
	  TANDEM_TEST_DATABASE_URL=$$url TANSU_BIN=$$TANSU_BIN exec cargo run --release --locked -p tandem-bench'

bench-scale: ## The scale phases: RPC, e2e, snapshot and reconcile at 10k, 100k and 1M customers; adds its section to BENCHMARKS.md
	scripts/postgres.sh start
	scripts/broker.sh install
	$(BUILD_DEPS)
	cargo build --release --bins --locked
	bash -c 'source scripts/common.sh && url=$$(scripts/postgres.sh url) && \
	  psql "$$url" -Atqc "SELECT format('"'"'DROP DATABASE IF EXISTS %I;'"'"', datname) FROM pg_database WHERE datname LIKE '"'"'test\_bench%'"'"'" | psql "$$url" -q >/dev/null && \
	  TANDEM_TEST_DATABASE_URL=$$url TANSU_BIN=$$TANSU_BIN BENCH_ONLY=scale exec cargo run --release --locked -p tandem-bench'

chaos: ## The long fault-injection run: kills, restarts and network partitions during a seeded workload, then the invariants
	CHAOS_OPS=$${CHAOS_OPS:-40000} CHAOS_KILLS=$${CHAOS_KILLS:-25} CHAOS_CONTINUOUS=1 \
	  CHAOS_DEADLINE_S=$${CHAOS_DEADLINE_S:-3600} \
	  CHAOS_FAULT_GAP_MS=$${CHAOS_FAULT_GAP_MS:-3000} \
	  scripts/test.sh -p tandem-tests --test chaos -- --nocapture

drill: ## The full backup-and-restore drill per database: WAL archive, base backup, PITR, resync
	TANDEM_DRILL=full scripts/test.sh -p tandem-tests --test restore -- --nocapture --test-threads 1

fuzz: ## Each fuzz target for FUZZ_SECONDS (default 60) with cargo-fuzz on nightly
	scripts/fuzz.sh
