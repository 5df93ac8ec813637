#!/usr/bin/env bash
# The same lifecycle driven purely with sc.exe, as an administrator would:
# sc create binPath= "...\lcowsnap.exe --run-service ..." -> sc description ->
# sc start -> sc query RUNNING -> RPC round trip -> sc stop -> STOPPED exit 0
# -> sc delete -> sc query says it does not exist.
. "$(dirname "$0")/lib.sh"

ROOT_W=$(winpath "$WORK/sc root")
KEY="HKLM\\SYSTEM\\CurrentControlSet\\Services\\$SVC"
BINPATH="\"$EXE_W\" --run-service --service-name $SVC --root \"$ROOT_W\" --address $PIPE"

step "sc create $SVC binPath= $BINPATH"
wine sc create "$SVC" binPath= "$BINPATH" start= demand DisplayName= "lcowsnap sc test" ||
  fail "sc create failed"
[ "$(reg_value "$KEY" ImagePath)" = "$BINPATH" ] ||
  fail "ImagePath is '$(reg_value "$KEY" ImagePath)', expected '$BINPATH'"
wine sc description "$SVC" "lcowsnap created with sc.exe" || fail "sc description failed"
[ "$(reg_value "$KEY" Description)" = "lcowsnap created with sc.exe" ] || fail "Description not stored"

step "sc start $SVC"
wine sc start "$SVC" >/dev/null
wait_state "$SVC" 4 30
wine sc query "$SVC"

if have_ctl; then
  step "RPC round trip"
  ctl version >/dev/null || fail "version over $PIPE failed"
  ctl prepare extract-sc >/dev/null
  ctl commit sc-layer extract-sc
  ctl info sc-layer | tee "$WORK/info.txt"
  grep -q "committed" "$WORK/info.txt" || fail "info does not show the committed snapshot"
else
  echo "(lcowsnapctl not built: RPC round trip skipped)"
fi

step "sc stop $SVC"
wine sc stop "$SVC" >/dev/null || true
wait_state "$SVC" 1 60
[ "$(sc_field "$SVC" WIN32_EXIT_CODE)" = 0 ] || fail "WIN32_EXIT_CODE $(sc_field "$SVC" WIN32_EXIT_CODE)"
[ "$(sc_field "$SVC" SERVICE_EXIT_CODE)" = 0 ] || fail "SERVICE_EXIT_CODE $(sc_field "$SVC" SERVICE_EXIT_CODE)"

step "sc start again: the committed snapshot is still there"
wine sc start "$SVC" >/dev/null
wait_state "$SVC" 4 30
if have_ctl; then
  ctl info sc-layer | grep -q committed || fail "sc-layer lost across restart"
fi
wine sc stop "$SVC" >/dev/null || true
wait_state "$SVC" 1 60

step "sc delete $SVC"
wine sc delete "$SVC" || fail "sc delete failed"
service_exists "$SVC" && fail "sc query still finds $SVC"
echo "PASS"
