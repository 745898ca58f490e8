# Shared variables for Tandem's scripts. Source it; every value can be overridden.
# shellcheck shell=bash

# Tools built once and kept outside the work tree (the broker takes ~15 minutes to build).
TANDEM_CACHE=${TANDEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem}
# Local state: the private PostgreSQL cluster and the broker's storage.
if [ "$(id -u)" = 0 ]; then
  TANDEM_STATE=${TANDEM_STATE:-/var/lib/tandem}
else
  TANDEM_STATE=${TANDEM_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/tandem}
fi
TANDEM_PG_PORT=${TANDEM_PG_PORT:-55432}
TANSU_VERSION=0.6.0
TANSU_BIN=${TANSU_BIN:-$TANDEM_CACHE/tansu-$TANSU_VERSION/bin/tansu}
export TANDEM_CACHE TANDEM_STATE TANDEM_PG_PORT TANSU_BIN

log() { printf '\033[1;34m[tandem]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[tandem]\033[0m %s\n' "$*" >&2; exit 1; }

# wait_for_port HOST PORT SECONDS
wait_for_port() {
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# apt_install PACKAGE...: installs Debian packages (as root) when they are missing.
apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to install $*; install them or set the URLs yourself"
  if [ ! -f "$TANDEM_CACHE/.apt-updated" ]; then
    apt-get update -qq && mkdir -p "$TANDEM_CACHE" && touch "$TANDEM_CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# build_deps: what cargo needs beyond the toolchain. librdkafka (rdkafka-sys) links the
# system's OpenSSL, found with pkg-config.
build_deps() {
  if ! command -v pkg-config >/dev/null || ! pkg-config --exists openssl; then
    apt_install libssl-dev pkg-config
  fi
}
