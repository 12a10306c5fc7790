#!/usr/bin/env bash
# Runs a command where KVM runs guests: here when this machine's /dev/kvm
# does (hardware virtualization), else inside the nested KVM test host
# (test/kvm-host/), saying so in one line. For make bench and make demo.
#   scripts/with-kvm.sh [--env K=V]... COMMAND...
set -euo pipefail
cd "$(dirname "$0")/.."
envs=()
while [ "${1:-}" = --env ]; do envs+=(--env "$2"); shift 2; done
{ read -r mode; read -r why; } < <(node dist/test/runner/which-mode.js)
if [ "$mode" = native ]; then
  for kv in "${envs[@]+"${envs[@]}"}"; do [ "$kv" = --env ] || export "${kv?}"; done
  exec "$@"
fi
echo "mvisor: running \`$*\` inside the nested KVM test host, because $why" >&2
exec node dist/test/kvm-host/cli.js --timeout "${MVISOR_HOST_TIMEOUT:-1800}" "${envs[@]+"${envs[@]}"}" -- "$@"
