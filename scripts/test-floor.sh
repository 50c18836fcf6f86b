#!/usr/bin/env bash
# Runs a test command (PHPUnit, node --test or cargo test) and fails unless it ran at
# least MIN tests that passed, skipped ones not counted.
# Why: PHPUnit 9 exits 0 when a filter, a bootstrap or a moved directory
# leaves it nothing to run ("No tests executed!"), `node --test DIR` (Node
# 20) exits 0 on a directory without test files ("# tests 0"), cargo test
# exits 0 when a filter matches nothing, and all
# exit 0 when every test skipped itself, so a suite could pass by testing
# nothing. Raise MIN when tests are added.
#
#   scripts/test-floor.sh MIN command args...
set -uo pipefail
min=$1; shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || exit "$rc"
# node --test's TAP summary: "# pass 12" (skipped tests are not in it).
ran=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -1)
if [ -z "$ran" ] && grep -q '^test result: ' "$out"; then
  # cargo test: one "test result: ok. 12 passed; 0 failed; 3 ignored; …"
  # per test binary; the passed ones summed.
  ran=$(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed;.*/\1/p' "$out" | awk '{s += $1} END {print s + 0}')
fi
if [ -z "$ran" ]; then
  # PHPUnit's summary: "OK (29 tests, 331 assertions)", or "Tests: 150,
  # Assertions: 900, Skipped: 3." (skipped and incomplete ones subtracted).
  ran=$(sed -n -e 's/^OK (\([0-9]*\) tests\{0,1\},.*/\1/p' -e 's/^Tests: \([0-9]*\),.*/\1/p' "$out" | tail -1)
  summary=$(grep -E '^Tests: [0-9]+,' "$out" | tail -1)
  for kind in Skipped Incomplete; do
    n=$(sed -n "s/.* $kind: \([0-9]*\).*/\1/p" <<<"$summary")
    [ -z "$n" ] || [ -z "$ran" ] || ran=$((ran - n))
  done
fi
if [ -z "$ran" ] || [ "$ran" -lt "$min" ]; then
  echo "test-floor: ran ${ran:-no} tests (passed, not skipped), expected at least $min: $*" >&2
  exit 1
fi
echo "test-floor: $ran tests passed (floor $min)"
