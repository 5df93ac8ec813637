#!/bin/bash
# lcowsnap-msi-wait.exe, the MSI's LcowWaitForExeRelease step, run directly under
# Wine against a copy of lcowsnap.exe that a running process keeps mapped:
#   absent file -> 0 at once; bad arguments -> 2;
#   held for the whole timeout -> 1, after at least the timeout;
#   held, then the holder exits -> 0, after the holder exited and well before the timeout.
TEST_NAME=installer_msi_wait
. "$(dirname "$0")/common.sh"
skip_unless_built
require_persistent_wineserver

WAIT_EXE=${LCOW_MSI_WAIT_EXE:?}
SVC_EXE=${LCOW_SERVICE_EXE:?}
TMP=${LCOW_TEST_TMP:?}
rm -rf "$TMP"/*
mkdir -p "$TMP"
cp "$SVC_EXE" "$TMP/held.exe"
held=$(winpath "$TMP/held.exe")
trap stop_exe_holder EXIT

waitrun() { wine_run "$WAIT_EXE" "$@"; }
ms_now() { date +%s%3N; }

out=$(waitrun 'Z:\no\such\dir\lcowsnap.exe' 5000) || fail "absent file: exit $?: $out"
log "absent: $out"
for args in "" "$held 12x" "$held -1" "$held 1 2"; do
  # shellcheck disable=SC2086 # word splitting is the point
  waitrun $args >/dev/null && fail "arguments '$args' accepted"
  rc=$?
  [ "$rc" -eq 2 ] || fail "arguments '$args': exit $rc, want 2 (usage)"
done
log "usage errors exit 2"

out=$(waitrun "$held" 1000) || fail "free file: exit $?: $out"
log "free: $out"

start_exe_holder "$held" "$TMP/root1" '\\.\pipe\lcowsnap-msi-wait-test'
t0=$(ms_now)
rc=0
out=$(waitrun "$held" 1500) || rc=$?
elapsed=$(($(ms_now) - t0))
[ "$rc" -eq 1 ] || fail "held for the whole timeout: exit $rc, want 1: $out"
[ "$elapsed" -ge 1500 ] || fail "held: gave up after $elapsed ms, before the 1500 ms timeout"
log "held throughout: exit 1 after $elapsed ms: $out"

# Released 2 s in: the wait must end then, not at its 30 s timeout.
stop_exe_holder_after 2
t0=$(ms_now)
rc=0
out=$(waitrun "$held" 30000) || rc=$?
elapsed=$(($(ms_now) - t0))
stop_exe_holder
[ "$rc" -eq 0 ] || fail "released after 2 s: exit $rc, want 0: $out"
[ "$elapsed" -ge 1500 ] || fail "released after 2 s: returned after $elapsed ms, while the exe was still held"
[ "$elapsed" -lt 20000 ] || fail "released after 2 s: returned only after $elapsed ms"
log "released 2 s in: exit 0 after $elapsed ms: $out"
log "PASS"
