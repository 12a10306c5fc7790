#!/usr/bin/env bash
# The demo (make demo): apply examples/demo/, show the VM's console until the
# guest resets, then destroy what was applied. State lives apart from the
# user's (in ~/.cache/mvisor/demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
state=${MVISOR_CACHE:-$HOME/.cache/mvisor}/demo/state.db
mkdir -p "$(dirname "$state")"
node bin/mvctl.js apply -f examples/demo --auto-approve --state "$state"
echo "--- serial console of VM demo (Ctrl-] detaches) ---"
node bin/mvctl.js console demo --state "$state" || true
echo "--- the guest has reset; cleaning up ---"
node bin/mvctl.js destroy --auto-approve --state "$state"
