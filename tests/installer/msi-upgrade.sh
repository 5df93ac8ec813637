#!/bin/bash
# Major upgrade under Wine: the MSI of this build (version N) is installed and holds a
# committed snapshot; the MSI of version N+1 (a second build tree of the same sources
# with the version bumped, made by installer_build_next_version) is installed over it.
# Afterwards: one product, one service entry, the N+1 binary is what runs (its
# --version and the Version RPC both say N+1), and the snapshot is still there.
# During the N+1 install a second process keeps the installed lcowsnap.exe mapped for
# HOLD_S seconds, standing in for a stopped service whose process has not exited yet
# (what happens on a loaded host): the MSI's wait step (LcowWaitForExeRelease) must
# let the file copy wait for it; without that step the copy finds the exe busy,
# Wine's msiexec schedules it for a reboot, exits 3010 and N stays on disk.
TEST_NAME=installer_msi_upgrade
. "$(dirname "$0")/common.sh"
skip_unless_built

MSI=${LCOW_MSI:?}
NEXT_MSI=${LCOW_NEXT_MSI:?}
NEXT_VERSION=${LCOW_NEXT_VERSION:?}
[ -f "$MSI" ] || fail "$MSI was not built (target lcowsnap_msi)"
[ -f "$NEXT_MSI" ] || fail "$NEXT_MSI missing: installer_build_next_version did not produce it"
[ "$NEXT_VERSION" != "$LCOW_VERSION" ] || fail "next version equals this version ($LCOW_VERSION)"
LOGDIR=${LCOW_TEST_TMP:?}
mkdir -p "$LOGDIR"
run_id="$(date +%s)-$$"
layer_key="upgrade/1/extract-layer-$run_id"
layer_name="upgrade/2/layer-$run_id"

take_service_lock
require_no_service
trap 'stop_exe_holder; cleanup_installs' EXIT
clean_state_dirs

log "install version $LCOW_VERSION"
wine_run msiexec /i "$(winpath "$MSI")" /qn /l*v "$(winpath "$LOGDIR")\\install-n.log" >/dev/null ||
  fail "msiexec /i $(basename "$MSI") failed; log: $LOGDIR/install-n.log"
expect_running_after_install
expect_quoted_image_path "after installing $LCOW_VERSION"
reported=$(service_version)
[ "$reported" = "$LCOW_VERSION" ] || fail "service reports '$reported' before the upgrade, want $LCOW_VERSION"
codes_before=$(installed_product_codes)
[ "$(wc -w <<<"$codes_before")" -eq 1 ] || fail "expected one installed product, got: $codes_before"
out=$(ctl prepare "$layer_key") || fail "prepare: $out"
out=$(ctl commit "$layer_name" "$layer_key") || fail "commit: $out"
find_state_dir

HOLD_S=${LCOW_UPGRADE_HOLD_S:-4}
rm -rf "$LOGDIR/holder" "$LOGDIR/holder.log"
start_exe_holder "$INSTALLED_SVC" "$LOGDIR/holder" '\\.\pipe\lcowsnap-upgrade-holder'
log "a second lcowsnap.exe process holds the installed exe for ${HOLD_S} s into the upgrade"
stop_exe_holder_after "$HOLD_S"

log "install version $NEXT_VERSION over it"
started=$SECONDS
rc=0
wine_run msiexec /i "$(winpath "$NEXT_MSI")" /qn /l*v "$(winpath "$LOGDIR")\\install-n1.log" >/dev/null || rc=$?
stop_exe_holder
[ "$rc" -eq 0 ] || {
  tr -d '\0\r' <"$LOGDIR/install-n1.log" | grep -a -E 'Return value [03]|error|Error|reboot' | tail -15 >&2
  fail "msiexec /i $(basename "$NEXT_MSI") exited $rc (194 is 3010, ERROR_SUCCESS_REBOOT_REQUIRED, cut to 8 bits: a file was in use and is replaced only at reboot); log: $LOGDIR/install-n1.log"
}
log "msiexec /i took $((SECONDS - started)) s with the exe held for ${HOLD_S} s"
grep -aq 'Action start .*LcowWaitForExeRelease' <(tr -d '\0' <"$LOGDIR/install-n1.log") ||
  fail "the N+1 install did not run LcowWaitForExeRelease"
grep -aq 'Action start .*RemoveExistingProducts' "$LOGDIR/install-n1.log" ||
  fail "the N+1 install did not run RemoveExistingProducts"
expect_running_after_install
expect_quoted_image_path "after the upgrade"

codes_after=$(installed_product_codes)
[ "$(wc -w <<<"$codes_after")" -eq 1 ] || fail "expected one installed product after upgrade, got: $codes_after"
[ "$codes_after" != "$codes_before" ] || fail "product code did not change ($codes_after)"
[ "$(installed_product_version "$codes_after")" = "$NEXT_VERSION" ] ||
  fail "installed product version is $(installed_product_version "$codes_after"), want $NEXT_VERSION"
entries=$(service_entry_count)
[ "$entries" -eq 1 ] || fail "expected one service entry running Program Files\\lcowsnap\\lcowsnap.exe, found $entries"
[ "$(service_state)" = RUNNING ] || fail "the one entry is not the $SERVICE service"

exe_version=$(wine_run "$INSTALLED_SVC" --version) || fail "lcowsnap.exe --version failed: $exe_version"
grep -qwF "$NEXT_VERSION" <<<"$exe_version" || fail "installed lcowsnap.exe --version says '$exe_version', want $NEXT_VERSION"
reported=$(service_version)
[ "$reported" = "$NEXT_VERSION" ] || fail "running service reports '$reported' after the upgrade, want $NEXT_VERSION"
log "after upgrade: one product ($codes_after, $NEXT_VERSION), one service, running binary says $NEXT_VERSION"

out=$(ctl info "$layer_name") || fail "snapshot $layer_name lost in the upgrade: $out"
grep -q committed <<<"$out" || fail "info after upgrade: $out"

wine_run msiexec /x "$(winpath "$NEXT_MSI")" /qn /l*v "$(winpath "$LOGDIR")\\uninstall-n1.log" >/dev/null ||
  fail "msiexec /x $(basename "$NEXT_MSI") failed"
expect_service_removed "after uninstalling $NEXT_VERSION" "$NEXT_MSI"
[ -z "$(installed_product_codes)" ] || fail "a product is still registered: $(installed_product_codes)"
[ -f "$STATE_DIR/meta/CURRENT" ] || fail "state directory lost on uninstall"
clean_state_dirs # verified kept; leave the shared prefix as we found it
log "PASS"
