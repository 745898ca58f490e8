#!/usr/bin/env bash
# Plants each defect of plants.py in turn (in memory, deploy/ untouched) and requires the run
# to fail with the failure meant for it. A test that cannot fail is a defect.
#   tests/k8s-run/defects.sh [run.sh options, e.g. --bin-dir DIR] [-- PLANT...]
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
opts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
mapfile -t all < <(cd "$here" && python3 -c 'from plants import PLANTS; [print(k) for k in PLANTS]')
plants=("${@:-${all[@]}}")
[ $# -gt 0 ] && plants=("$@")
failed=0
for plant in "${plants[@]}"; do
  expect=$(cd "$here" && python3 -c "from plants import PLANTS; print(PLANTS['$plant'][1])")
  started=$SECONDS
  out=$("$here/run.sh" --ready-timeout 40 "${opts[@]}" --plant "$plant" 2>&1 | tr -d '\0')
  rc=$?
  first=$(grep -F "FAIL [" <<<"$out" | grep -F -- "$expect" | head -1)
  if [ $rc -ne 0 ] && [ -n "$first" ]; then
    echo "ok   [defect] $plant caught in $((SECONDS - started)) s: ${first:0:400}"
  else
    echo "FAIL [defect] $plant: the run exited $rc without a failure mentioning '$expect':"
    grep -E "FAIL|PASSED|FAILED" <<<"$out" | sed 's/^/    /'
    failed=1
  fi
done
exit $failed
