#!/bin/bash
# The MSI's own tables, read with msitools: catches a broken ServiceInstall,
# ServiceControl, File, Upgrade or sequence row even where Wine's msiexec is lenient.
# Also checks the zip's contents. Runs no Windows code.
TEST_NAME=installer_msi_tables
. "$(dirname "$0")/common.sh"
skip_unless_built

MSI=${LCOW_MSI:?}
ZIP=${LCOW_ZIP:?}
[ -f "$MSI" ] || fail "$MSI was not built (target lcowsnap_msi)"
command -v msiinfo >/dev/null || fail "msiinfo not installed (Debian package msitools)"

tables=$(msiinfo tables "$MSI" | tr -d '\r')
for table in ServiceInstall ServiceControl File Component Directory Upgrade CustomAction \
  InstallExecuteSequence Property Binary; do
  grep -qx "$table" <<<"$tables" || fail "table $table missing from msiinfo tables"
done

# Every table's data rows (msiinfo export prints 3 header lines), exported once, up
# front, into rows/TABLE; a table the MSI lacks has no rows. msiinfo runs in its own
# directory, streams/: exporting a table with streams (Binary) also writes them to
# ./Binary/. (It used to run where the rows were cached, so its ./Binary/ directory
# and the rows file Binary raced: under load the directory came first, the rows file
# could not be written and the Binary table read as empty. The Binary/ made below
# forces that order: the export must not care.)
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
mkdir -p "$cache/rows" "$cache/streams/Binary"
for table in $tables; do
  (cd "$cache/streams" && msiinfo export "$MSI" "$table") >"$cache/rows/$table.raw" ||
    fail "msiinfo export $table failed (exit $?)"
  tr -d '\r' <"$cache/rows/$table.raw" | tail -n +4 >"$cache/rows/$table"
done
rows() { [ ! -f "$cache/rows/$1" ] || cat "$cache/rows/$1"; }
# field TABLE KEYCOLUMN-VALUE N: column N of the row whose first column is the key.
field() { rows "$1" | awk -F '\t' -v key="$2" -v n="$3" '$1 == key { print $n; found = 1 } END { exit !found }'; }

# ServiceInstall: ServiceInstall Name DisplayName ServiceType StartType ErrorControl
#   LoadOrderGroup Dependencies StartName Password Arguments Component_ Description
si=$(rows ServiceInstall)
[ "$(wc -l <<<"$si")" -eq 1 ] || fail "expected exactly one ServiceInstall row, got: $si"
# (awk, not read: tab is IFS whitespace, so read would merge empty columns)
col() { awk -F '\t' -v n="$2" '{ print $n }' <<<"$1"; }
si_name=$(col "$si" 2) si_type=$(col "$si" 4) si_start=$(col "$si" 5) si_error=$(col "$si" 6)
si_account=$(col "$si" 9) si_args=$(col "$si" 11) si_component=$(col "$si" 12)
log "ServiceInstall: name=$si_name type=$si_type start=$si_start account=$si_account args='$si_args' component=$si_component"
[ "$si_name" = "$SERVICE" ] || fail "ServiceInstall Name is '$si_name', want $SERVICE"
[ "$si_type" = 16 ] || fail "ServiceType $si_type, want 16 (SERVICE_WIN32_OWN_PROCESS)"
[ "$si_start" = 2 ] || fail "StartType $si_start, want 2 (SERVICE_AUTO_START)"
[ "$si_account" = LocalSystem ] || fail "StartName '$si_account', want LocalSystem"
[ $((si_error & 0xff)) = 1 ] || fail "ErrorControl $si_error, want 1 (normal)"
[ "$si_args" = "${LCOW_SERVICE_ARGUMENTS:?}" ] ||
  fail "ServiceInstall Arguments '$si_args', want '$LCOW_SERVICE_ARGUMENTS'"
case " $si_args " in *" --run-service "*) ;; *) fail "Arguments lack --run-service" ;; esac
# The service component's key file must be lcowsnap.exe: that is the binary the SCM runs.
[ "$(field Component "$si_component" 6)" = lcowsnap.exe ] ||
  fail "component $si_component (ServiceInstall) does not have lcowsnap.exe as key path"

# ServiceControl: ServiceControl Name Event Arguments Wait Component_
sc=$(rows ServiceControl)
[ "$(wc -l <<<"$sc")" -eq 1 ] || fail "expected exactly one ServiceControl row, got: $sc"
sc_name=$(col "$sc" 2) sc_event=$(col "$sc" 3) sc_wait=$(col "$sc" 5) sc_component=$(col "$sc" 6)
log "ServiceControl: name=$sc_name event=$sc_event wait=$sc_wait component=$sc_component"
[ "$sc_name" = "$SERVICE" ] || fail "ServiceControl Name '$sc_name'"
# msidbServiceControlEvent: 1 start on install, 2 stop on install, 32 stop on
# uninstall, 128 delete on uninstall. Nothing else (no start on uninstall).
[ $((sc_event & 1)) -ne 0 ] || fail "ServiceControl does not start the service on install"
[ $((sc_event & 2)) -ne 0 ] || fail "ServiceControl does not stop the service on install/upgrade"
[ $((sc_event & 32)) -ne 0 ] || fail "ServiceControl does not stop the service on uninstall"
[ $((sc_event & 128)) -ne 0 ] || fail "ServiceControl does not delete the service on uninstall"
[ $((sc_event & ~(1 | 2 | 32 | 128))) -eq 0 ] || fail "ServiceControl has unexpected event bits: $sc_event"
[ "$sc_wait" = 1 ] || fail "ServiceControl Wait is '$sc_wait', want 1"
[ "$sc_component" = "$si_component" ] || fail "ServiceControl is on $sc_component, ServiceInstall on $si_component"

# File: both exes, README and license, all in INSTALLDIR = ProgramFiles64Folder\lcowsnap,
# in 64-bit components (msidbComponentAttributes64bit = 256).
for file in lcowsnap.exe lcowsnapctl.exe README.md LICENSE.txt; do
  component=$(field File "$file" 2) || fail "File table has no $file"
  filename=$(field File "$file" 3)
  [ "${filename##*|}" = "$file" ] || fail "File $file is installed as '$filename'"
  [ "$(field Component "$component" 3)" = INSTALLDIR ] || fail "$file is not in INSTALLDIR"
  attributes=$(field Component "$component" 4)
  [ $((attributes & 256)) -ne 0 ] || fail "component $component of $file is not 64-bit (attributes $attributes)"
done
exe_size=$(field File lcowsnap.exe 4)
[ "$exe_size" -gt 0 ] || fail "lcowsnap.exe has size $exe_size in the File table"
[ "$(field Directory INSTALLDIR 2)" = ProgramFiles64Folder ] || fail "INSTALLDIR is not under ProgramFiles64Folder"
[ "$(field Directory INSTALLDIR 3)" = lcowsnap ] || fail "INSTALLDIR is not named lcowsnap"
# Nothing in the package names the state directory, so uninstall cannot remove it.
if rows Directory | grep -qi -e CommonAppDataFolder -e ProgramData; then
  fail "the MSI has a directory under ProgramData: uninstall could remove the state directory"
fi
if rows RemoveFile | grep -q .; then fail "the MSI has RemoveFile rows: $(rows RemoveFile)"; fi

# Event Log source, as --register-service writes it, owned by the service component.
rows Registry | awk -F '\t' -v s="$SERVICE" '$2 == 2 && $3 ~ ("^SYSTEM\\\\CurrentControlSet\\\\Services\\\\EventLog\\\\Application\\\\" s "\\\\?$") &&
  $4 == "EventMessageFile" && $5 == "[#lcowsnap.exe]" && $6 == "'"$si_component"'" { ok = 1 } END { exit !ok }' ||
  fail "no Event Log source (EventMessageFile = lcowsnap.exe) in the Registry table: $(rows Registry)"

# Product identity: the version from CMake, the fixed UpgradeCode, per-machine, x64.
[ "$(field Property ProductVersion 2)" = "${LCOW_VERSION:?}" ] || fail "ProductVersion is not $LCOW_VERSION"
upgrade_code=$(field Property UpgradeCode 2)
[ "$upgrade_code" = '{3A180306-7988-4242-8062-EFD5CD73F3D5}' ] || fail "UpgradeCode changed: $upgrade_code"
[ "$(field Property ALLUSERS 2)" = 1 ] || fail "ALLUSERS is not 1 (per-machine)"
msiinfo suminfo "$MSI" | tr -d '\r' | grep -qx 'Template: x64;1033' || fail "summary Template is not x64;1033"

# MajorUpgrade: older versions with our UpgradeCode are detected and removed.
rows Upgrade | awk -F '\t' -v code="$upgrade_code" -v v="$LCOW_VERSION" \
  '$1 == code && $2 == "" && $3 == v && $7 == "WIX_UPGRADE_DETECTED" { ok = 1 } END { exit !ok }' ||
  fail "no Upgrade row detecting versions below $LCOW_VERSION: $(rows Upgrade)"

# Sequence: old product removed between InstallValidate and InstallInitialize (so an
# upgrade never deletes the service it just installed), failure-action custom actions
# between InstallServices and StartServices, skipped on uninstall.
seq() { field InstallExecuteSequence "$1" 3 || fail "InstallExecuteSequence has no $1"; }
[ "$(seq InstallValidate)" -lt "$(seq RemoveExistingProducts)" ] &&
  [ "$(seq RemoveExistingProducts)" -lt "$(seq InstallInitialize)" ] ||
  fail "RemoveExistingProducts is not between InstallValidate and InstallInitialize"
for action in LcowFailureActions LcowFailureFlag LcowDelayedAutoStart; do
  [ "$(seq InstallServices)" -lt "$(seq $action)" ] && [ "$(seq $action)" -lt "$(seq StartServices)" ] ||
    fail "$action is not between InstallServices and StartServices"
  [ "$(field InstallExecuteSequence $action 2)" = 'NOT (REMOVE~="ALL")' ] || fail "$action runs on uninstall"
  type=$(field CustomAction $action 2)
  # 50 = exe named by a property; 1024 deferred; 2048 no impersonation (LocalSystem).
  [ $((type & 63)) = 50 ] && [ $((type & 1024)) -ne 0 ] && [ $((type & 2048)) -ne 0 ] ||
    fail "$action has type $type, want a deferred, non-impersonated exe custom action"
done
field CustomAction LcowFailureActions 4 | grep -qx "failure $SERVICE reset= 86400 actions= restart/5000/restart/10000//0" ||
  fail "failure actions command is $(field CustomAction LcowFailureActions 4)"
# The wait for the stopped service's exe (lcowsnap-msi-wait.exe from the Binary table):
# after StopServices, before DeleteServices and the file actions, on install and
# uninstall alike; type 2 (exe in Binary) + 64 (return ignored) + deferred + no
# impersonation; it waits on the installed lcowsnap.exe.
[ "$(seq StopServices)" -lt "$(seq LcowWaitForExeRelease)" ] &&
  [ "$(seq LcowWaitForExeRelease)" -lt "$(seq DeleteServices)" ] &&
  [ "$(seq LcowWaitForExeRelease)" -lt "$(seq RemoveFiles)" ] &&
  [ "$(seq LcowWaitForExeRelease)" -lt "$(seq InstallFiles)" ] ||
  fail "LcowWaitForExeRelease is not between StopServices and DeleteServices/RemoveFiles/InstallFiles"
[ -z "$(field InstallExecuteSequence LcowWaitForExeRelease 2)" ] || fail "LcowWaitForExeRelease has a condition"
[ "$(field CustomAction LcowWaitForExeRelease 2)" = 3138 ] ||
  fail "LcowWaitForExeRelease has type $(field CustomAction LcowWaitForExeRelease 2), want 3138"
binary=$(field CustomAction LcowWaitForExeRelease 3)
rows Binary | awk -F '\t' -v b="$binary" '$1 == b { ok = 1 } END { exit !ok }' ||
  fail "LcowWaitForExeRelease names Binary '$binary', which the Binary table lacks"
[ "$(field CustomAction LcowWaitForExeRelease 4)" = '"[INSTALLDIR]lcowsnap.exe" 30000' ] ||
  fail "LcowWaitForExeRelease command line is '$(field CustomAction LcowWaitForExeRelease 4)'"
field CustomAction LcowSetScPath 4 | grep -qx '\[System64Folder\]sc.exe' || fail "sc.exe path custom action changed"
# CWE-428: the ImagePath quoting step (lcowsnap-msi-quote.exe from the Binary table)
# after InstallServices, before StartServices (so the service first starts from the
# quoted path), not on uninstall; type 2 (exe in Binary) + deferred + no
# impersonation, return checked (3074); it quotes the installed lcowsnap.exe.
[ "$(seq InstallServices)" -lt "$(seq LcowQuoteImagePath)" ] &&
  [ "$(seq LcowQuoteImagePath)" -lt "$(seq StartServices)" ] ||
  fail "LcowQuoteImagePath is not between InstallServices and StartServices"
[ "$(field InstallExecuteSequence LcowQuoteImagePath 2)" = 'NOT (REMOVE~="ALL")' ] ||
  fail "LcowQuoteImagePath runs on uninstall"
[ "$(field CustomAction LcowQuoteImagePath 2)" = 3074 ] ||
  fail "LcowQuoteImagePath has type $(field CustomAction LcowQuoteImagePath 2), want 3074"
binary=$(field CustomAction LcowQuoteImagePath 3)
rows Binary | awk -F '\t' -v b="$binary" '$1 == b { ok = 1 } END { exit !ok }' ||
  fail "LcowQuoteImagePath names Binary '$binary', which the Binary table lacks"
[ "$(field CustomAction LcowQuoteImagePath 4)" = "$SERVICE \"[INSTALLDIR]lcowsnap.exe\"" ] ||
  fail "LcowQuoteImagePath command line is '$(field CustomAction LcowQuoteImagePath 4)'"

# The zip: one folder with the three exes, README.md, LICENSE and the two scripts.
[ -f "$ZIP" ] || fail "$ZIP was not built (target lcowsnap_zip)"
stem=$(basename "$ZIP" .zip)
listing=$("${LCOW_CMAKE:-cmake}" -E tar tf "$ZIP" | sort)
want=$(printf '%s\n' "$stem/" "$stem/LICENSE" "$stem/README.md" "$stem/install.ps1" \
  "$stem/lcowsnap.exe" "$stem/lcowsnapctl.exe" "$stem/lcowsnap-tar2ext4.exe" \
  "$stem/uninstall.ps1" | sort)
[ "$listing" = "$want" ] || fail "zip contents differ: $(diff <(echo "$want") <(echo "$listing"))"
[ "$stem" = "lcowsnap-$LCOW_VERSION-x64" ] || fail "zip is named $stem"
log "MSI tables and zip contents OK ($(basename "$MSI"), $(basename "$ZIP"))"
