#!/bin/bash
# The MSI's ServiceInstall/@Arguments must be the command line that
# `lcowsnap.exe --register-service` writes when given no other flags, so an MSI
# install and a script install run the service the same way. Registers the build's
# lcowsnap.exe under the real service name (holding the service lock), reads
# ImagePath from the registry, unregisters, and compares the part after the exe.
TEST_NAME=installer_service_args
. "$(dirname "$0")/common.sh"
skip_unless_built

EXE=${LCOW_SERVICE_EXE:?}
MSI=${LCOW_MSI:?}
[ -f "$MSI" ] || fail "$MSI was not built"
msi_args=$(msiinfo export "$MSI" ServiceInstall | tr -d '\r' | tail -n +4 | awk -F '\t' '{ print $11 }')

take_service_lock
require_no_service
unregister() {
  wine_run "$EXE" --unregister-service >/dev/null
  [ "$(service_state)" = ABSENT ] || { wine_run sc stop "$SERVICE" >/dev/null; wine_run sc delete "$SERVICE" >/dev/null; }
}
trap unregister EXIT

out=$(wine_run "$EXE" --register-service) || fail "lcowsnap.exe --register-service failed: $out"
image_path=$(wine_run reg query "HKLM\\SYSTEM\\CurrentControlSet\\Services\\$SERVICE" /v ImagePath |
  sed -n 's/.*ImagePath *REG_[A-Z_]* *//p')
[ -n "$image_path" ] || fail "--register-service wrote no ImagePath"
log "--register-service ImagePath: $image_path"
# Strip the exe: "quoted path" or an unquoted path ending in lcowsnap.exe.
case "$image_path" in
  '"'*) args=${image_path#\"*\"} ;;
  *) args=${image_path#*lcowsnap.exe} ;;
esac
args=${args# }
log "register-service arguments: '$args'; MSI Arguments: '$msi_args'"
[ "$args" = "$msi_args" ] || fail "MSI ServiceInstall Arguments '$msi_args' != --register-service's '$args'"
unregister
trap - EXIT
[ "$(service_state)" = ABSENT ] || fail "--unregister-service left the service registered"
log "PASS"
