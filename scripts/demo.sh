#!/usr/bin/env bash
# The demo (make demo): apply examples/demo/, show the VM's console until the
# guest resets, then destroy what was applied, also when something fails.
# State lives apart from the user's (in ~/.cache/mvisor/demo/, or in the
# test host's /tmp). Where this machine's /dev/kvm is missing (or emulates
# guest kernel code), scripts/with-kvm.sh runs it in the nested test host.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != --here ]; then
  exec scripts/with-kvm.sh --env "MVISOR_DEMO_STATE=${MVISOR_DEMO_STATE:-}" bash scripts/demo.sh --here
fi
state=${MVISOR_DEMO_STATE:-}
if [ -z "$state" ]; then
  # Inside the test host the cache is read-only: its /tmp is the place.
  if grep -q 'mvhost\.nonce=' /proc/cmdline; then state=/tmp/mvisor-demo/state.db
  else state=${MVISOR_CACHE:-$HOME/.cache/mvisor}/demo/state.db; fi
fi
mkdir -p "$(dirname "$state")"
cleanup() {
  echo "--- cleaning up ---"
  node bin/mvctl.js destroy --auto-approve --state "$state"
}
trap cleanup EXIT
node bin/mvctl.js apply -f examples/demo --auto-approve --state "$state"
echo "--- serial console of VM demo (Ctrl-] detaches) ---"
node bin/mvctl.js console demo --state "$state" || true
echo "--- the guest has reset ---"
