#!/usr/bin/env bash
# scripts/stress-test.sh: the whole win64 (Wine) CTest suite, LCOW_STRESS_ROUNDS
# times (default 5), while `stress-ng --cpu 2` keeps two CPU hogs running, as
# other work on a shared 2-core machine would. Zero failures is the bar: a test
# that only passes on an idle machine has a race (issue 14 item 12).
#
# Builds the win64 preset first (build/win64, or LCOW_STRESS_BUILD_DIR). Ends
# with one line per round (passed/failed, seconds, the failing tests) and the
# total time; exit status 0 only when every round passed.
#
# Environment: LCOW_JOBS (build and ctest parallelism, default 2),
# LCOW_STRESS_ROUNDS (default 5), LCOW_STRESS_CPU (stress-ng --cpu, default 2),
# LCOW_STRESS_BUILD_DIR (default build/win64).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
jobs=${LCOW_JOBS:-2}
rounds=${LCOW_STRESS_ROUNDS:-5}
cpu=${LCOW_STRESS_CPU:-2}
bdir=${LCOW_STRESS_BUILD_DIR:-$root/build/win64}

die() {
  echo "stress-test: $*" >&2
  exit 1
}

if ! command -v stress-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "stress-test: installing stress-ng (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends stress-ng >/dev/null ||
      die "apt-get install stress-ng failed"
  else
    die "stress-ng is not installed: sudo apt-get install stress-ng"
  fi
fi

start_all=$(date +%s)
echo "==== stress-test: configure + build win64 ($bdir)"
cmake --preset win64 -B "$bdir" >"$root/build/.configure-stress.log" 2>&1 || {
  cat "$root/build/.configure-stress.log"
  die "configuring win64 failed"
}
cmake --build "$bdir" -j "$jobs" || die "building win64 failed"

stress_pid=
stop_stress() {
  [ -n "$stress_pid" ] || return 0
  kill -TERM "$stress_pid" 2>/dev/null
  wait "$stress_pid" 2>/dev/null
  stress_pid=
}
trap stop_stress EXIT
# No --timeout: it runs until stopped; its own workers follow it.
stress-ng --cpu "$cpu" --quiet &
stress_pid=$!
sleep 1
kill -0 "$stress_pid" 2>/dev/null || die "stress-ng --cpu $cpu did not start"
echo "==== stress-test: stress-ng --cpu $cpu running (pid $stress_pid); $rounds rounds of the win64 suite"

declare -a summary
failed_rounds=0
suite_start=$(date +%s)
for round in $(seq 1 "$rounds"); do
  start=$(date +%s)
  log=$bdir/stress-round-$round.log
  echo "==== stress-test: round $round of $rounds"
  ctest --test-dir "$bdir" -j "$jobs" --no-tests=error --output-on-failure >"$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ "$rc" = 0 ]; then
    summary+=("round $round: ok, ${line:-?}, ${secs} s")
  else
    failed_rounds=$((failed_rounds + 1))
    failing=$(sed -nE 's/^[[:space:]]*[0-9]+ - ([^ ]+) \(.*/\1/p' "$log" | tr '\n' ' ')
    summary+=("round $round: FAILED (exit $rc), ${line:-?}, ${secs} s: ${failing:-see $log}")
    # The failures' output, so a flaky run can be diagnosed from this log alone.
    grep -E -B2 -A40 'Test +#[0-9]+: .*\*\*\*(Failed|Timeout|Exception)' "$log" | tail -n 200
  fi
  echo "  ${summary[-1]}"
done
stop_stress
suite_secs=$(($(date +%s) - suite_start))

echo
echo "==== stress-test summary: $rounds rounds under stress-ng --cpu $cpu, ${suite_secs} s" \
  "($((suite_secs / 60)) min $((suite_secs % 60)) s; with the build $(($(date +%s) - start_all)) s)"
printf '  %s\n' "${summary[@]}"
if [ "$failed_rounds" = 0 ]; then
  echo "==== stress-test passed: 0 failures in $rounds rounds"
  exit 0
fi
echo "==== stress-test FAILED: $failed_rounds of $rounds rounds had failures"
exit 1
