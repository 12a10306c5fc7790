#!/bin/sh
# The GitOps pipeline's steps (pipeline.yml runs them on the VM host;
# test/unit/examples/gitops.test.ts runs them in order against a temporary
# state). MVISOR_STATE names the state file the pipeline keeps on the host.
#
#   steps.sh plan            validate, plan; writes plan.json (the saved plan: the artifact) and plan.txt
#   steps.sh apply plan.json apply exactly that plan (refused if state moved on since); writes apply.jsonl
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mvctl=${MVCTL:-mvctl}
: "${MVISOR_STATE:?set MVISOR_STATE to the state file the pipeline keeps}"

case "${1:-}" in
plan)
  $mvctl state init >/dev/null # the first run creates the state, on purpose
  $mvctl validate -f "$here/manifests"
  set +e
  $mvctl plan -f "$here/manifests" --out plan.json --detailed-exitcode --no-color >plan.txt
  rc=$?
  set -e
  cat plan.txt
  case $rc in
  0) changes=false ;;
  2) changes=true ;;
  *) exit "$rc" ;;
  esac
  echo "changes: $changes"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "changes=$changes" >>"$GITHUB_OUTPUT"; fi
  ;;
apply)
  $mvctl apply "${2:?usage: steps.sh apply PLANFILE}" --json >apply.jsonl
  ;;
*)
  echo "usage: steps.sh plan | apply PLANFILE" >&2
  exit 1
  ;;
esac
