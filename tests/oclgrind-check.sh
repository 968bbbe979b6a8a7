#!/usr/bin/env bash
# Runs a test under Oclgrind and fails on any Oclgrind diagnostic (out-of-bounds access,
# data race, uninitialized value, API misuse) as well as on the test's own failure.
set -u
oclgrind=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$oclgrind" --check-api --data-races --uninitialized --log "$log" "$@"
rc=$?
if [ -s "$log" ]; then
  echo "Oclgrind reported problems:"
  head -n 200 "$log"
  exit 1
fi
exit $rc
