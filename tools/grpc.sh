#!/usr/bin/env bash
# grpcurl-style calls using only server reflection (see tools/grpc_call.py).
# Installs grpcio + grpcio-reflection into a virtualenv under $TANDEM_CACHE on first use.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
venv=$TANDEM_CACHE/pyenv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import grpc_reflection' 2>/dev/null; then
  log "installing grpcio and grpcio-reflection into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet grpcio grpcio-reflection protobuf
fi
exec "$venv/bin/python" "$(dirname "$0")/grpc_call.py" "$@"
