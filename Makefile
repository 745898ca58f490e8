# Tandem: `make run` and `make test` provision what they need on a fresh machine.
.PHONY: run test lint fmt build provision stop

run: ## Provision, build and run the whole stack in the foreground (Ctrl-C stops it)
	scripts/run.sh

test: ## Everything CI runs: unit, integration and end-to-end tests on real parts
	scripts/test.sh

lint: ## rustfmt check + clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --workspace --bins --locked

provision: ## Start PostgreSQL and install the broker without running anything
	scripts/postgres.sh start
	scripts/broker.sh install

stop: ## Stop the PostgreSQL cluster and broker started by the scripts
	scripts/broker.sh stop
	scripts/postgres.sh stop
