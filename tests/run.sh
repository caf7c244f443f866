#!/bin/sh
# Runs the busted specs (all of tests/*_spec.lua, or the files given) and ends with one
# line "N passed, N failed". A spec file that crashes the interpreter counts as a failure.
cd "$(dirname "$0")/.." || exit 2
specs="$*"
[ -n "$specs" ] || specs=$(ls tests/*_spec.lua)
out=$(mktemp)
passed=0 failed=0
for spec in $specs; do
  busted --lua=lua5.4 -o TAP "$spec" > "$out" 2>&1
  rc=$?
  p=$(grep -c '^ok ' "$out")
  f=$(grep -c '^not ok ' "$out")
  if ! grep -q '^1\.\.[0-9]' "$out" || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
    echo "CRASH in $spec (exit $rc):"; grep -m1 -A12 -E "runtime error|ERROR: AddressSanitizer" "$out" || tail -n 30 "$out"; f=$((f + 1))
  elif [ "$f" -ne 0 ]; then
    grep -A 12 '^not ok ' "$out"
  fi
  printf '%-40s %4d passed, %d failed\n' "$spec" "$p" "$f"
  passed=$((passed + p)) failed=$((failed + f))
done
rm -f "$out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
