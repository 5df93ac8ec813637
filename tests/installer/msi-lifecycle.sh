#!/bin/bash
# The MSI under Wine, as an administrator would use it:
#   msiexec /i /qn -> service RUNNING -> lcowsnapctl version over \\.\pipe\lcowsnap
#   -> prepare/commit -> msiexec /x /qn -> service and binaries gone, state directory
#   with its LevelDB kept -> msiexec /i again -> the earlier snapshot is still there
#   -> msiexec /x.
# The MSI installs with the default root, %ProgramData%\lcowsnap inside the prefix;
# it is emptied before the first install so runs are repeatable.
# First it plants what an interrupted msiexec leaves in a prefix, an orphaned
# Windows Installer client of the service's component (a product code that is not
# installed), and require_no_service must remove it: with it, Wine's msiexec /x keeps
# the component as shared and never stops or deletes the service (the make
# stress-test failure "service still registered after msiexec /x (state RUNNING)").
TEST_NAME=installer_msi_lifecycle
. "$(dirname "$0")/common.sh"
skip_unless_built

MSI=${LCOW_MSI:?}
[ -f "$MSI" ] || fail "$MSI was not built (target lcowsnap_msi)"
LOGDIR=${LCOW_TEST_TMP:?}
mkdir -p "$LOGDIR"
run_id="$(date +%s)-$$"
layer_key="installer/1/extract-layer-$run_id"
layer_name="installer/2/layer-$run_id"

take_service_lock
orphan_code=$(tr 'a-z' 'A-Z' </proc/sys/kernel/random/uuid)
service_component=$(msiinfo export "$MSI" Component | awk -F '\t' '$1 == "ServiceExe" { print $2 }')
[ -n "$service_component" ] || fail "no ServiceExe component in $MSI"
wine_run reg add "$INSTALLER_COMPONENTS_KEY\\$(packed_guid "$service_component")" \
  /v "$(packed_guid "$orphan_code")" /d "$INSTALLED_SVC" /f >/dev/null ||
  fail "could not plant an orphaned client of component $service_component"
log "planted an orphaned client {$orphan_code} of component $service_component"
require_no_service
[ -z "$(orphaned_component_clients "$MSI")" ] || fail "require_no_service left orphaned clients"
trap cleanup_installs EXIT
clean_state_dirs

msi_install() { # msi_install LOGNAME
  wine_run msiexec /i "$(winpath "$MSI")" /qn /l*v "$(winpath "$LOGDIR")\\$1.log" >/dev/null ||
    fail "msiexec /i $(basename "$MSI") failed (rc $?); log: $LOGDIR/$1.log"
}
msi_uninstall() { # msi_uninstall LOGNAME
  wine_run msiexec /x "$(winpath "$MSI")" /qn /l*v "$(winpath "$LOGDIR")\\$1.log" >/dev/null ||
    fail "msiexec /x $(basename "$MSI") failed (rc $?); log: $LOGDIR/$1.log"
}

log "install $(basename "$MSI")"
msi_install install1
expect_running_after_install
for file in lcowsnap.exe lcowsnapctl.exe README.md LICENSE.txt; do
  [ -f "$INSTALL_DIR/$file" ] || fail "$file not installed in Program Files\\lcowsnap"
done
cmp -s "$INSTALL_DIR/lcowsnap.exe" "${LCOW_SERVICE_EXE:?}" || fail "installed lcowsnap.exe differs from the build's"
# ImagePath: the quoted installed exe and the arguments (Wine's InstallServices leaves
# it unquoted; LcowQuoteImagePath quotes it before StartServices).
expect_quoted_image_path "after install"
grep -aq 'Action start .*LcowQuoteImagePath' <(tr -d '\0' <"$LOGDIR/install1.log") ||
  fail "LcowQuoteImagePath custom action did not run during install"
# Event Log source registered with the installed exe as message file.
eventlog_key="HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\$SERVICE"
message_file=$(wine_run reg query "$eventlog_key" /v EventMessageFile | sed -n 's/.*EventMessageFile *REG_[A-Z_]* *//p')
[ "$message_file" = "$INSTALLED_SVC" ] || fail "Event Log source EventMessageFile is '$message_file', want $INSTALLED_SVC"
# The failure-action custom actions ran (Wine's sc.exe stores nothing, so only the log shows it).
grep -aq 'Action start .*LcowFailureActions' "$LOGDIR/install1.log" ||
  fail "LcowFailureActions custom action did not run during install"

version_out=$(ctl version) || fail "lcowsnapctl version failed: $version_out"
log "lcowsnapctl version: $(tr '\n' ' ' <<<"$version_out")"
reported=$(service_version)
[ "$reported" = "$LCOW_VERSION" ] || fail "service reports version '$reported' over the pipe, want $LCOW_VERSION"

out=$(ctl prepare "$layer_key") || fail "lcowsnapctl prepare $layer_key: $out"
out=$(ctl commit "$layer_name" "$layer_key") || fail "lcowsnapctl commit: $out"
out=$(ctl info "$layer_name") || fail "lcowsnapctl info after commit: $out"
grep -q committed <<<"$out" || fail "info does not say committed: $out"
log "prepare/commit round trip OK: $layer_name committed"
find_state_dir

log "uninstall"
msi_uninstall uninstall1
expect_service_removed "after msiexec /x" "$MSI"
[ -z "$(component_client_report "$MSI")" ] ||
  fail "Windows Installer still lists clients of the MSI's components: $(component_client_report "$MSI")"
[ ! -e "$INSTALL_DIR/lcowsnap.exe" ] && [ ! -e "$INSTALL_DIR/lcowsnapctl.exe" ] ||
  fail "binaries still in Program Files\\lcowsnap after msiexec /x"
[ -f "$STATE_DIR/meta/CURRENT" ] || fail "state directory lost its LevelDB (meta/CURRENT) on uninstall"
[ -n "$(installed_product_codes)" ] && fail "product still registered after msiexec /x"
wine_run reg query "$eventlog_key" /v EventMessageFile >/dev/null && fail "Event Log source left behind by msiexec /x"
log "after uninstall: service and binaries gone; $(ls "$STATE_DIR" | tr '\n' ' ')kept"

log "install again"
msi_install install2
expect_running_after_install
out=$(ctl info "$layer_name") || fail "snapshot $layer_name lost across uninstall/reinstall: $out"
grep -q committed <<<"$out" || fail "info after reinstall: $out"
log "reinstall finds $layer_name"

msi_uninstall uninstall2
expect_service_removed "after the second msiexec /x" "$MSI"
[ -f "$STATE_DIR/meta/CURRENT" ] || fail "state directory lost on the second uninstall"
clean_state_dirs # verified kept; leave the shared prefix as we found it
log "PASS"
