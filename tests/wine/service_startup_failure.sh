#!/usr/bin/env bash
# Startup failures leave the service STOPPED with ERROR_SERVICE_SPECIFIC_ERROR
# (1066) and lcowsnap's service-specific exit code, so `sc query` says why:
# 3 = state directory not writable, 5 = pipe name taken. (The matching Event
# Log entry is checked in test_service_win: Wine's Event Log is a stub.)
. "$(dirname "$0")/lib.sh"

LOG="$WORK/service.log"
LOG_W=$(winpath "$LOG")

expect_failure() { # DESCRIPTION EXIT-CODE LOG-TEXT
  wine sc start "$SVC" >/dev/null 2>&1 || true
  wait_state "$SVC" 1 30
  wine sc query "$SVC"
  [ "$(sc_field "$SVC" WIN32_EXIT_CODE)" = 1066 ] ||
    fail "$1: WIN32_EXIT_CODE is $(sc_field "$SVC" WIN32_EXIT_CODE), expected 1066"
  [ "$(sc_field "$SVC" SERVICE_EXIT_CODE)" = "$2" ] ||
    fail "$1: SERVICE_EXIT_CODE is $(sc_field "$SVC" SERVICE_EXIT_CODE), expected $2"
  grep -qF "$3" "$LOG" || fail "$1: the log does not say '$3'"
}

step "root not writable (a file is in the way) -> service-specific exit code 3"
echo "not a directory" >"$WORK/blocker"
BAD_ROOT_W=$(winpath "$WORK/blocker/state")
wine "$LCOWSNAP_EXE" --register-service --service-name "$SVC" --root "$BAD_ROOT_W" \
  --address "$PIPE" --log-file "$LOG_W" >/dev/null 2>&1 || fail "register failed"
expect_failure "unwritable root" 3 "service-specific exit code 3 (state directory not writable)"
wine "$LCOWSNAP_EXE" --unregister-service --service-name "$SVC" >/dev/null 2>&1 ||
  fail "unregister failed"

step "pipe name taken by a foreground lcowsnap -> service-specific exit code 5"
FG_ROOT_W=$(winpath "$WORK/foreground")
wine "$LCOWSNAP_EXE" --root "$FG_ROOT_W" --address "$PIPE" >"$WORK/foreground.log" 2>&1 &
BACKGROUND_PIDS+=($!)
for _ in $(seq 1 80); do
  grep -q "in the foreground" "$WORK/foreground.log" 2>/dev/null && break
  sleep 0.25
done
grep -q "in the foreground" "$WORK/foreground.log" || fail "the foreground lcowsnap did not start"
GOOD_ROOT_W=$(winpath "$WORK/state")
wine "$LCOWSNAP_EXE" --register-service --service-name "$SVC" --root "$GOOD_ROOT_W" \
  --address "$PIPE" --log-file "$LOG_W" >/dev/null 2>&1 || fail "register failed"
expect_failure "pipe taken" 5 "service-specific exit code 5 (address in use)"

step "the foreground instance still serves, and Ctrl+C (SIGINT) stops it cleanly"
if have_ctl; then
  ctl version >/dev/null || fail "the foreground lcowsnap stopped answering"
fi
kill -INT "${BACKGROUND_PIDS[0]}"
wait "${BACKGROUND_PIDS[0]}" || fail "foreground lcowsnap exited with $? after Ctrl+C"
BACKGROUND_PIDS=()
grep -q "Ctrl+C received" "$WORK/foreground.log" || fail "no graceful shutdown logged"
grep -q "closed" "$WORK/foreground.log" || fail "store not closed"
echo "PASS"
