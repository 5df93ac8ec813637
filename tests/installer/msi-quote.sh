#!/bin/bash
# CWE-428 (unquoted service path) under Wine's real SCM, without msiexec:
#   a service created with an UNQUOTED ImagePath whose exe path has a space
#   (what Wine's InstallServices writes) runs, and lcowsnap logs a warning at
#   startup naming the problem and the fix;
#   lcowsnap-msi-quote.exe (the MSI's LcowQuoteImagePath step) rewrites it as
#   "EXE" ARGS through the SCM; started again, the service does not warn;
#   running it again changes nothing; an ImagePath that does not start with
#   EXE, a missing service and bad arguments are refused with their exit codes.
TEST_NAME=installer_msi_quote
. "$(dirname "$0")/common.sh"
skip_unless_built
require_persistent_wineserver

QUOTE_EXE=${LCOW_MSI_QUOTE_EXE:?}
SVC_EXE=${LCOW_SERVICE_EXE:?}
TMP=${LCOW_TEST_TMP:?}
rm -rf "${TMP:?}"/*
svc=lcowsnap-quote-$$
pipe="\\\\.\\pipe\\$svc"
key="HKLM\\SYSTEM\\CurrentControlSet\\Services\\$svc"
mkdir -p "$TMP/dir with space" "$TMP/root"
cp "$SVC_EXE" "$TMP/dir with space/lcowsnap.exe"
exe=$(winpath "$TMP/dir with space/lcowsnap.exe")
root=$(winpath "$TMP/root")
logfile=$TMP/service.log
args="--run-service --service-name $svc --root $root --address $pipe --log-file $(winpath "$logfile")"

cleanup() {
  wine_run sc stop "$svc" >/dev/null 2>&1
  for _ in $(seq 1 40); do
    [ "$(state)" = STOPPED ] || [ "$(state)" = ABSENT ] && break
    sleep 0.25
  done
  wine_run sc delete "$svc" >/dev/null 2>&1
  wine_run sc delete "$svc-other" >/dev/null 2>&1
  wine_run reg delete "HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\$svc" /f >/dev/null 2>&1
}
trap cleanup EXIT
state() {
  local out
  out=$(wine_run sc query "$svc") || { echo ABSENT; return; }
  awk '/STATE/ { print $4; exit }' <<<"$out"
}
wait_state() { # wait_state STATE SECONDS
  local deadline=$((SECONDS + $2))
  until [ "$(state)" = "$1" ]; do
    [ $SECONDS -lt $deadline ] ||
      fail "service $svc is $(state), not $1, after $2 s: $(wine_run sc query "$svc" | tr -s ' \n' ' '); log: $(tail -n 5 "$logfile" 2>/dev/null)"
    sleep 0.25
  done
}
image_path() {
  wine_run reg query "$key" /v ImagePath | sed -n 's/.*ImagePath *REG_[A-Z_]* *//p'
}
run_once() { # start, wait RUNNING, stop, wait STOPPED
  local out
  out=$(wine_run sc start "$svc") || fail "sc start $svc failed: $out"
  wait_state RUNNING 60
  wine_run sc stop "$svc" >/dev/null
  wait_state STOPPED 60
}
warning='ImagePath is not quoted'

wine_run sc create "$svc" binPath= "$exe $args" start= demand >/dev/null || fail "sc create failed"
[ "$(image_path)" = "$exe $args" ] || fail "sc create stored ImagePath '$(image_path)'"
log "unquoted ImagePath: $(image_path)"
run_once
grep -q "$warning" "$logfile" || fail "no startup warning for the unquoted ImagePath; log: $(cat "$logfile")"
grep -q 'CWE-428' "$logfile" || fail "the warning does not name CWE-428"
grep -q -- '--register-service' "$logfile" || fail "the warning does not name the fix"
log "startup warning: $(grep -m1 "$warning" "$logfile" | cut -c1-160)..."

out=$(wine_run "$QUOTE_EXE" "$svc" "$exe") || fail "lcowsnap-msi-quote failed (exit $?): $out"
log "$out"
[ "$(image_path)" = "\"$exe\" $args" ] || fail "ImagePath after quoting is '$(image_path)'"
: >"$logfile"
run_once
grep -q 'listening on' "$logfile" || fail "the service did not start from the quoted path; log: $(cat "$logfile")"
if grep -q "$warning" "$logfile"; then fail "warned although ImagePath is quoted"; fi

out=$(wine_run "$QUOTE_EXE" "$svc" "$exe") || fail "second run failed (exit $?): $out"
grep -q 'already quoted' <<<"$out" || fail "second run did not say 'already quoted': $out"
[ "$(image_path)" = "\"$exe\" $args" ] || fail "ImagePath changed by the second run: '$(image_path)'"

other="$svc-other"
wine_run sc create "$other" binPath= "C:\\other dir\\other.exe --x" start= demand >/dev/null ||
  fail "sc create $other failed"
rc=0
out=$(wine_run "$QUOTE_EXE" "$other" "$exe") || rc=$?
other_path=$(wine_run reg query "$key-other" /v ImagePath | sed -n 's/.*ImagePath *REG_[A-Z_]* *//p')
wine_run sc delete "$other" >/dev/null
[ "$rc" -eq 3 ] || fail "ImagePath naming another exe: exit $rc, want 3 (not ours): $out"
[ "$other_path" = 'C:\other dir\other.exe --x' ] || fail "another exe's ImagePath was changed: '$other_path'"
rc=0
out=$(wine_run "$QUOTE_EXE" "$svc-absent" "$exe") || rc=$?
[ "$rc" -eq 1 ] || fail "missing service: exit $rc, want 1: $out"
for bad in "" "$svc" "$svc $exe extra"; do
  rc=0
  # shellcheck disable=SC2086 # word splitting is the point
  wine_run "$QUOTE_EXE" $bad >/dev/null || rc=$?
  [ "$rc" -eq 2 ] || fail "arguments '$bad': exit $rc, want 2 (usage)"
done
log "PASS"
