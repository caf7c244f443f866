#!/bin/sh
# Runs each spec under valgrind's memcheck: any invalid access or definitely/indirectly lost
# block fails. Ends with one line "N passed, N failed" (specs, not tests). Slow (minutes).
cd "$(dirname "$0")/.." || exit 2
specs="$*"
[ -n "$specs" ] || specs=$(ls tests/*_spec.lua)
passed=0 failed=0
for spec in $specs; do
  log=$(mktemp)
  # OpenMP's thread pool is only reachable memory; OMP_NUM_THREADS=1 keeps the run short
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 valgrind --quiet --leak-check=full \
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 lua5.4 /usr/bin/busted -o TAP "$spec" > "$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); echo "clean   $spec"
  else
    failed=$((failed + 1)); echo "FAILED  $spec (exit $rc)"; grep -A20 '^==' "$log" | head -40
  fi
  rm -f "$log"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
