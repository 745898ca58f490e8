#!/usr/bin/env bash
# Renders the Kubernetes overlays (deploy/k8s/overlays/{local,prod}) and checks them offline
# (no cluster): strict schema validation (Kubernetes' own schemas from the kubernetes-validate
# package, the operators' from tests/k8s/schemas), restricted Pod Security, ServiceAccounts,
# loopback, pinned images, probes, Secrets, databases, Kafka topics and users, network
# policies, monitoring names, and the alerts' promtool unit tests. What each check proves is
# in tests/k8s/*.py; each prints one line, and the first failure stops the run (exit 1).
#
#   tests/k8s/render.sh [K8S_DIR]     # K8S_DIR defaults to deploy/k8s
#
# Needs kubectl (with its built-in kustomize) and python3; installs its PyPI packages
# (tests/k8s/requirements.txt, pinned) into a venv under $TANDEM_STATE, and promtool (Debian's
# `prometheus` package) when missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
k8s=$(cd "${1:-$root/deploy/k8s}" && pwd)
overlays=(local prod)
# shellcheck source=scripts/common.sh
source "$root/scripts/common.sh"

for tool in kubectl python3; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed" >&2; exit 1; }
done
command -v promtool >/dev/null || apt_install prometheus

# The checks' Python packages, rebuilt when requirements.txt changes.
venv=$TANDEM_STATE/k8s-venv
stamp=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if [[ ! -x $venv/bin/python || $(cat "$venv/.requirements" 2>/dev/null) != "$stamp" ]]; then
    log "installing the manifest checks' Python packages into $venv"
    rm -rf "$venv"
    # Debian's python3 makes venvs only with its python3-venv package.
    python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$stamp" >"$venv/.requirements"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for overlay in "${overlays[@]}"; do
    dir=$k8s/overlays/$overlay
    if ! kubectl kustomize "$dir" >"$work/$overlay.yaml" 2>"$work/$overlay.err"; then
        echo "FAIL [render]: kubectl kustomize $dir failed:" >&2
        sed 's/^/    /' "$work/$overlay.err" >&2
        exit 1
    fi
    echo "ok   [render] overlays/$overlay renders with kubectl kustomize"
done

export TANDEM_ROOT=$root TANDEM_K8S=$k8s PYTHONDONTWRITEBYTECODE=1
"$venv/bin/python" "$here/checks.py" "$work" "${overlays[@]}"
# The checks can fail: each planted defect must be caught by the check meant for it.
"$venv/bin/python" "$here/defects.py"
echo "all Kubernetes manifest checks passed"
