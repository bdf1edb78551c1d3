#!/usr/bin/env bash
# run_tests.sh - every test of the project, stage by stage. A failing stage
# does not stop the others; the script exits non-zero if any failed and ends
# with one summary line. Called by `make test` (after setup) and so by CI.
set -uo pipefail
cd "$(dirname "$0")/.."

stages=(
  "C tests (gcc)|make --no-print-directory test-c"
  "C tests (clang -Werror)|make --no-print-directory test-clang"
  "C tests (ASan+UBSan)|make --no-print-directory test-asan"
  "C tests (TSan: engine)|make --no-print-directory test-tsan"
  "C tests (valgrind memcheck)|make --no-print-directory test-valgrind"
  "short fuzz run|make --no-print-directory fuzz-short"
  "Python, app and browser tests (pytest)|make --no-print-directory test-python"
  "Python types (mypy)|make --no-print-directory typecheck"
)
passed=0
failed=0
failed_names=()
for s in "${stages[@]}"; do
  name=${s%%|*}
  cmd=${s#*|}
  echo
  echo "================ $name ================"
  start=$SECONDS
  if bash -c "$cmd"; then
    passed=$((passed + 1))
    echo "---- $name: passed in $((SECONDS - start)) s"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "---- $name: FAILED after $((SECONDS - start)) s"
  fi
done
echo
((failed)) && printf 'failed stage: %s\n' "${failed_names[@]}"
echo "stages: $passed passed, $failed failed"
((failed == 0))
