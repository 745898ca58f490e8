#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target for FUZZ_SECONDS (default 60) each, with cargo-fuzz on
# the nightly toolchain (installed once into $TANDEM_CACHE). Crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

seconds=${FUZZ_SECONDS:-60}
export PATH="$TANDEM_CACHE/cargo-fuzz/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  log "installing cargo-fuzz into $TANDEM_CACHE (once)"
  cargo install cargo-fuzz --locked --root "$TANDEM_CACHE/cargo-fuzz" --quiet
fi
rustup toolchain list | grep -q '^nightly' || die "cargo-fuzz needs a nightly toolchain"
build_deps
cd fuzz
for target in $(cargo +nightly fuzz list); do
  log "fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target"
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
log "no crash found"
