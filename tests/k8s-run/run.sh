#!/usr/bin/env bash
# The Kubernetes manifests, run without a cluster: see run.py. Needs root, kubectl, PostgreSQL
# 15 (Debian), stunnel4, tansu (scripts/broker.sh install), openssl, iproute2, util-linux.
#   tests/k8s-run/run.sh [--k8s-dir DIR] [--bin-dir DIR] [--keep]
# --bin-dir defaults to <repo>/target/debug (crm-service, erp-service, sync-bridge, tandemctl).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$root/scripts/common.sh"
[ "$(id -u)" = 0 ] || die "tests/k8s-run needs root (network namespaces, mounts)"
command -v openssl >/dev/null || apt_install openssl
command -v ip >/dev/null && command -v ss >/dev/null || apt_install iproute2
command -v nft >/dev/null || apt_install nftables  # the partition phase: DROP rules per pod
for tool in kubectl openssl ip unshare setpriv nsenter ss nft; do
  command -v "$tool" >/dev/null || die "tests/k8s-run: $tool is not installed"
done
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || apt_install stunnel4
[ -x /usr/lib/postgresql/15/bin/postgres ] || apt_install postgresql-15
[ -x "$TANSU_BIN" ] || "$root/scripts/broker.sh" install
# grpcio for the frontend client and the kubelet's gRPC probe, pinned, in a cached venv.
venv=$TANDEM_STATE/k8s-run-venv
pins=(grpcio==1.85.3 grpcio-reflection==1.85.1 protobuf==7.36.2)
if [ ! -f "$venv/.pins" ] || [ "$(cat "$venv/.pins")" != "${pins[*]}" ]; then
  log "installing ${pins[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "${pins[@]}"
  echo "${pins[*]}" >"$venv/.pins"
fi
export TANSU_BIN
exec "$venv/bin/python" "$root/tests/k8s-run/run.py" "$@"
