#!/usr/bin/env bash
# Runs a PHPUnit command and fails unless it ran at least MIN tests.
# Why: PHPUnit 9 exits 0 when a filter, a bootstrap or a moved directory
# leaves it nothing to run ("No tests executed!"), so a suite could pass
# by testing nothing. Raise MIN when tests are added.
#
#   scripts/test-floor.sh MIN command args...
set -uo pipefail
min=$1; shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || exit "$rc"
# PHPUnit's summary: "OK (29 tests, 331 assertions)" or "Tests: 150, Assertions: …".
ran=$(sed -n -e 's/^OK (\([0-9]*\) tests\{0,1\},.*/\1/p' -e 's/^Tests: \([0-9]*\),.*/\1/p' "$out" | tail -1)
if [ -z "$ran" ] || [ "$ran" -lt "$min" ]; then
  echo "test-floor: ran ${ran:-no} tests, expected at least $min: $*" >&2
  exit 1
fi
