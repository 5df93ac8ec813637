#!/usr/bin/env bash
# A stop while 32 clients are busy: every request the service took on is
# answered completely (no truncated or malformed response; a client only
# sees its connection end cleanly between requests), the service reaches
# STOPPED with exit code 0, and after the next start every commit that was
# answered is a committed snapshot.
. "$(dirname "$0")/lib.sh"
: "${LCOW_LOAD_CLIENT:?set by CTest}"

ROOT_W=$(winpath "$WORK/state")
LOG="$WORK/service.log"
COMMITTED="$WORK/committed.txt"
READY="$WORK/ready"

step "register and start $SVC"
wine "$LCOWSNAP_EXE" --register-service --service-name "$SVC" --root "$ROOT_W" \
  --address "$PIPE" --log-file "$(winpath "$LOG")" --log-level debug >/dev/null 2>&1 ||
  fail "register failed"
wine sc start "$SVC" >/dev/null
wait_state "$SVC" 4 30

step "32 clients loop Prepare + Commit"
wine "$LCOW_LOAD_CLIENT" load "$PIPE" 32 "$(winpath "$COMMITTED")" "$(winpath "$READY")" \
  >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
for _ in $(seq 1 240); do
  [ -e "$READY" ] && break
  kill -0 $LOAD_PID 2>/dev/null || break
  sleep 0.25
done
[ -e "$READY" ] || fail "the clients never got going: $(cat "$WORK/load.log")"

step "sc stop while they are busy"
wine sc stop "$SVC" >/dev/null || true
wait_state "$SVC" 1 60
[ "$(sc_field "$SVC" WIN32_EXIT_CODE)" = 0 ] || fail "WIN32_EXIT_CODE $(sc_field "$SVC" WIN32_EXIT_CODE)"
[ "$(sc_field "$SVC" SERVICE_EXIT_CODE)" = 0 ] || fail "SERVICE_EXIT_CODE $(sc_field "$SVC" SERVICE_EXIT_CODE)"
load_rc=0
wait $LOAD_PID || load_rc=$?
cat "$WORK/load.log"
[ $load_rc -eq 0 ] || fail "load client: $load_rc (truncated/malformed responses or no commits)"
grep "stop requested" "$LOG" || fail "no stop logged"
grep -qF "snapshot store in $ROOT_W closed" "$LOG" || fail "store not closed"
echo "$(wc -l <"$COMMITTED") commits were answered before the stop"

step "restart: every answered commit is there"
wine sc start "$SVC" >/dev/null
wait_state "$SVC" 4 30
wine "$LCOW_LOAD_CLIENT" verify "$PIPE" "$(winpath "$COMMITTED")" || fail "commits lost"
wine sc stop "$SVC" >/dev/null || true
wait_state "$SVC" 1 60
wine "$LCOWSNAP_EXE" --unregister-service --service-name "$SVC" >/dev/null 2>&1 ||
  fail "unregister failed"
echo "PASS"
