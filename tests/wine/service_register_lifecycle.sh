#!/usr/bin/env bash
# Self-registration lifecycle under Wine's SCM:
# --register-service -> registry shows the configuration -> sc start ->
# RUNNING -> RPC round trip over the pipe -> sc stop -> STOPPED, exit 0, store
# closed -> --unregister-service -> the service and its event source are gone.
. "$(dirname "$0")/lib.sh"

ROOT_W=$(winpath "$WORK/state dir")
LOG="$WORK/service.log"
LOG_W=$(winpath "$LOG")
KEY="HKLM\\SYSTEM\\CurrentControlSet\\Services\\$SVC"
SRC_KEY="HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\$SVC"

step "register $SVC"
wine "$LCOWSNAP_EXE" --register-service --service-name "$SVC" --root "$ROOT_W" \
  --address "$PIPE" --log-file "$LOG_W" --log-level debug >"$WORK/register.log" 2>&1 ||
  fail "--register-service failed: $(cat "$WORK/register.log")"
cat "$WORK/register.log"

step "registry: $KEY"
wine reg query "$KEY" | tr -d '\r' | tee "$WORK/reg.txt"
image=$(reg_value "$KEY" ImagePath)
case $image in
  "\"$EXE_W\" --run-service "*) ;;
  *) fail "ImagePath does not start with the quoted exe and --run-service: $image" ;;
esac
for part in "--service-name $SVC" "--root \"$ROOT_W\"" "--address $PIPE" "--log-level debug" \
  "--log-file $LOG_W"; do
  [[ $image == *"$part"* ]] || fail "ImagePath lacks '$part': $image"
done
[ "$(reg_value "$KEY" Start)" = "0x2" ] || fail "Start is not 2 (automatic)"
[ "$(reg_value "$KEY" Type)" = "0x10" ] || fail "Type is not 0x10 (own process)"
[ "$(reg_value "$KEY" ObjectName)" = "LocalSystem" ] || fail "ObjectName is not LocalSystem"
[ "$(reg_value "$KEY" DelayedAutostart)" = "0x1" ] || fail "DelayedAutostart is not 1"
[ "$(reg_value "$KEY" PreshutdownTimeout)" = "0x7530" ] || fail "PreshutdownTimeout is not 30000"
[[ $(reg_value "$KEY" Description) == *"Linux containers on Windows"* ]] || fail "no Description"
[ "$(reg_value "$SRC_KEY" EventMessageFile)" = "$EXE_W" ] ||
  fail "Event Log source $SRC_KEY does not point at the exe"
[ "$(reg_value "$SRC_KEY" TypesSupported)" = "0x7" ] || fail "TypesSupported is not 7"

if [ -n "${LCOW_LOAD_CLIENT:-}" ]; then
  step "the EventMessageFile renders lcowsnap's messages (as Event Viewer would)"
  msg=$(wine "$LCOW_LOAD_CLIENT" message "$(reg_value "$SRC_KEY" EventMessageFile)" 0xc0000067 \
    "exit code 3" | tr -d '\r')
  [[ $msg == "The lcowsnap service could not start: exit code 3"* ]] ||
    fail "STARTUP_FAILED renders as '$msg'"
  msg=$(wine "$LCOW_LOAD_CLIENT" message "$EXE_W" 0x40000064 "root X" | tr -d '\r')
  [[ $msg == "The lcowsnap service started and is accepting clients: root X"* ]] ||
    fail "SERVICE_STARTED renders as '$msg'"
  ver=$(wine "$LCOW_LOAD_CLIENT" version "$EXE_W" | tr -d '\r')
  wine "$LCOWSNAP_EXE" --version | grep -qF "lcowsnap $ver " ||
    fail "version resource '$ver' does not match --version"
fi

step "registering twice is an error that changes nothing"
if wine "$LCOWSNAP_EXE" --register-service --service-name "$SVC" --root 'C:\other' \
  >"$WORK/register2.log" 2>&1; then
  fail "second --register-service succeeded"
fi
grep -q "service $SVC is already registered; nothing was changed" "$WORK/register2.log" ||
  fail "unclear second-registration error: $(cat "$WORK/register2.log")"
[ "$(reg_value "$KEY" ImagePath)" = "$image" ] || fail "ImagePath changed by the failed registration"

step "sc start $SVC"
wine sc start "$SVC" >/dev/null
wait_state "$SVC" 4 30
wine sc query "$SVC"

if have_ctl; then
  step "RPC round trip with lcowsnapctl over $PIPE"
  ctl version | tee "$WORK/version.txt"
  grep -q "Snapshotter: windows-lcow" "$WORK/version.txt" || fail "version did not answer"
  ctl prepare extract-base >/dev/null
  ctl commit base extract-base
  ctl ls | tee "$WORK/ls.txt"
  grep -q "^base .*committed" "$WORK/ls.txt" || fail "committed snapshot not listed"
else
  echo "(lcowsnapctl not built: RPC round trip skipped)"
fi

step "sc stop $SVC"
wine sc stop "$SVC" >/dev/null || true
wait_state "$SVC" 1 60
[ "$(sc_field "$SVC" WIN32_EXIT_CODE)" = 0 ] || fail "stopped with WIN32_EXIT_CODE $(sc_field "$SVC" WIN32_EXIT_CODE)"
grep -qF "snapshot store in $ROOT_W closed" "$LOG" || fail "the log does not say the store closed"
grep -q "stop requested" "$LOG" || fail "the log does not say a stop was requested"

step "start again, then unregister while RUNNING (it is stopped first)"
wine sc start "$SVC" >/dev/null
wait_state "$SVC" 4 30
wine "$LCOWSNAP_EXE" --unregister-service --service-name "$SVC" 2>&1 | tee "$WORK/unregister.log"
grep -q "stopping service $SVC before deleting it" "$WORK/unregister.log" ||
  fail "--unregister-service did not stop the running service first"
[ "$(grep -c "stop requested" "$LOG")" = 2 ] || fail "the second run did not get a stop"
service_exists "$SVC" && fail "sc query still finds $SVC"
wine reg query "$KEY" >/dev/null 2>&1 && fail "service key still present"
wine reg query "$SRC_KEY" >/dev/null 2>&1 && fail "Event Log source still present"

step "unregistering again is a clear error"
if wine "$LCOWSNAP_EXE" --unregister-service --service-name "$SVC" >"$WORK/unregister2.log" 2>&1; then
  fail "second --unregister-service succeeded"
fi
grep -q "service $SVC is not registered; nothing was changed" "$WORK/unregister2.log" ||
  fail "unclear error: $(cat "$WORK/unregister2.log")"
echo "PASS"
