# Shared helpers of the Wine service tests (sourced). CTest provides
# LCOWSNAP_EXE, LCOW_TEST_TMP and the Wine environment; LCOWSNAPCTL_EXE and
# LCOW_LOAD_CLIENT when those targets exist. The CTest fixture keeps a
# persistent wineserver for the shared prefix (Wine ends services ~1 s after
# the last ordinary Wine process otherwise); never `wineserver -k` it here.
set -euo pipefail
unset DISPLAY WAYLAND_DISPLAY
export WINEDEBUG=-all

: "${LCOWSNAP_EXE:?set by CTest}"
: "${LCOW_TEST_TMP:?set by CTest}"
TEST_NAME=$(basename "$0" .sh)
# A unique service (and pipe) name per run: several test runs may share the
# prefix, and a leftover from an interrupted run must not collide.
SVC="lcowsnap-${TEST_NAME#service_}-$$"
PIPE="\\\\.\\pipe\\$SVC"
# Work files and the service's --root in a short private directory of its own:
# LevelDB under Windows opens its files by name and stops at MAX_PATH (260), so
# the root must stay short whatever the checkout's depth ("File name is too
# long"; issue 14 item 11; the other win64 tests use LCOW_TEST_TMP_ROOT, a short
# /tmp directory, for the same reason: tests/CMakeLists.txt).
WORK=$(mktemp -d /tmp/lcow.XXXXXX)
BACKGROUND_PIDS=()

step() { echo "== $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# The fixture's persistent wineserver, checked rather than assumed: without it
# the server exits between two commands, stops every service and reloads the
# registry, and these tests fail at random under load.
LCOW_WINEPREFIX=$WINEPREFIX "$(dirname "${BASH_SOURCE[0]}")/../../scripts/wine-env.sh" persistent >/dev/null ||
  fail "no persistent wineserver for $WINEPREFIX: run these tests through ctest (fixture wine_up)"
# Z:\... path of a Linux path (backslashes: LevelDB under Wine needs them).
winpath() { printf 'Z:%s' "$(realpath -m "$1" | tr / '\\')"; }

EXE_W=$(winpath "$LCOWSNAP_EXE")

# sc_field NAME FIELD: the number of STATE / WIN32_EXIT_CODE /
# SERVICE_EXIT_CODE in `sc query NAME` (empty if the service does not exist,
# or if `sc query` failed). It never fails itself: under `set -e` and
# pipefail a failing `sc query` in `state=$(sc_field ...)` ended a test
# silently, with no FAIL line (wine_service_stop_drain under stress-ng, while
# the service was going from STOP_PENDING to STOPPED); callers wait and say
# what they waited for.
sc_field() {
  { wine sc query "$1" 2>/dev/null || true; } | tr -d '\r' | awk -v f="$2" '$1 == f { print $3 }'
}

# wait_state NAME STATE-NUMBER SECONDS
wait_state() {
  local name=$1 want=$2 secs=$3 i state=""
  for ((i = 0; i < secs * 4; i++)); do
    state=$(sc_field "$name" STATE)
    [ "$state" = "$want" ] && return 0
    sleep 0.25
  done
  echo "sc query $name after ${secs} s:" >&2
  wine sc query "$name" >&2 || true
  fail "service $name did not reach state $want (last state '${state}')"
}

service_exists() { wine sc query "$1" >/dev/null 2>&1; }

# Always leave the prefix as we found it: stop and delete the service, drop
# its Event Log source, end background Wine processes we started.
cleanup() {
  local rc=$?
  set +e
  if service_exists "$SVC"; then
    if [ "$(sc_field "$SVC" STATE)" != 1 ]; then
      wine sc stop "$SVC" >/dev/null 2>&1
      for _ in $(seq 1 40); do
        [ "$(sc_field "$SVC" STATE)" = 1 ] && break
        sleep 0.25
      done
    fi
    wine sc delete "$SVC" >/dev/null 2>&1
  fi
  wine reg delete "HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\$SVC" /f \
    >/dev/null 2>&1
  for pid in "${BACKGROUND_PIDS[@]}"; do
    kill -INT "$pid" 2>/dev/null
  done
  for pid in "${BACKGROUND_PIDS[@]}"; do
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null
  done
  if [ $rc -eq 0 ]; then
    rm -rf "$WORK"
  else
    echo "(work files kept in $WORK)" >&2
    for f in "$WORK"/*.log; do
      [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  exit $rc
}
trap cleanup EXIT

# ctl ARGS...: lcowsnapctl against this test's pipe (skipped when absent).
have_ctl() { [ -n "${LCOWSNAPCTL_EXE:-}" ] && [ -f "$LCOWSNAPCTL_EXE" ]; }
ctl() { wine "$LCOWSNAPCTL_EXE" --address "$PIPE" "$@"; }

# reg_value KEY NAME: the data column of `reg query KEY /v NAME`.
reg_value() {
  wine reg query "$1" /v "$2" 2>/dev/null | tr -d '\r' | awk -v n="$2" '$1 == n { $1 = ""; $2 = ""; sub(/^  */, ""); print }'
}
