#!/usr/bin/env bash
# scripts/run-tests.sh [PRESET...]   (default: native native-asan win64 fuzz)
#
# For each preset: configure, build, and run its whole CTest suite with
# --output-on-failure. A preset that fails to configure or build is reported
# and the others still run; the exit status is non-zero if anything failed.
# Ends with a summary: per preset the CTest tests run and failed, and the
# cmocka cases executed (from CTest's full log, Testing/Temporary/LastTest.log).
#
# Environment: LCOW_JOBS (build and ctest parallelism, default 2),
# LCOW_CTEST_ARGS (extra ctest arguments, e.g. "-L unit").
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
mkdir -p "$root/build"
jobs=${LCOW_JOBS:-2}
presets=("$@")
[ ${#presets[@]} = 0 ] && presets=(native native-asan win64 fuzz)

declare -A result
overall=0
start_all=$(date +%s)

binary_dir() { echo "$root/build/$1"; }

for preset in "${presets[@]}"; do
  start=$(date +%s)
  bdir=$(binary_dir "$preset")
  echo "==== $preset: configure + build ($bdir)"
  # No stale results: .ci/run reports from these files.
  rm -f "$bdir/ctest-summary.log" "$bdir/Testing/Temporary/LastTest.log" \
    "$bdir/reliability-summary.txt"
  if ! cmake --preset "$preset" >"$root/build/.configure-$preset.log" 2>&1; then
    cat "$root/build/.configure-$preset.log"
    result[$preset]="CONFIGURE FAILED"
    overall=1
    continue
  fi
  # Keep going past a failing target so every test that can be built still
  # runs; the preset is reported as failed either way.
  build_ok=1
  if ! cmake --build --preset "$preset" -j "$jobs" -- -k 0; then
    build_ok=0
    overall=1
  fi
  echo "==== $preset: ctest"
  log=$bdir/ctest-summary.log
  # shellcheck disable=SC2086
  ctest --preset "$preset" -j "$jobs" --no-tests=error ${LCOW_CTEST_ARGS:-} 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # One line per reliability campaign (tests/torture), written by the tests.
  if [ -s "$bdir/reliability-summary.txt" ]; then
    echo "==== $preset: reliability"
    cat "$bdir/reliability-summary.txt"
  fi
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  total=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<<"$line")
  failed=$(sed -nE 's/.*, ([0-9]+) tests? failed.*/\1/p' <<<"$line")
  # cmocka prints "[==========] N test(s) run." once per executable.
  cases=0
  last=$bdir/Testing/Temporary/LastTest.log
  if [ -f "$last" ]; then
    cases=$(grep -aoE '^\[==========\] [0-9]+ test\(s\) run\.' "$last" |
      awk '{s += $2} END {print s + 0}')
  fi
  secs=$(($(date +%s) - start))
  if [ "$rc" = 0 ]; then
    result[$preset]="ok: ${total:-0} ctest tests passed, ${cases} cmocka cases, ${secs} s"
  else
    result[$preset]="FAILED: ${failed:-?} of ${total:-?} ctest tests failed, ${cases} cmocka cases ran, ${secs} s"
    overall=1
  fi
  if [ $build_ok = 0 ]; then
    result[$preset]="BUILD FAILED (see above); ${result[$preset]}"
  fi
done

echo
echo "==== summary ($(($(date +%s) - start_all)) s)"
for preset in "${presets[@]}"; do
  printf '  %-12s %s\n' "$preset" "${result[$preset]:-not run}"
done
if [ $overall = 0 ]; then
  echo "==== all test suites passed"
else
  echo "==== TEST SUITES FAILED"
fi
exit $overall
