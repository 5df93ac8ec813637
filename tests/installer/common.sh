# Shared helpers for the installer tests (sourced by the *.sh tests here).
# Environment, set per test by tests/installer/CMakeLists.txt:
#   LCOW_INSTALLER_MISSING  non-empty: the exes are not in this build yet -> skip (77)
#   LCOW_WINE               wine launcher (CMAKE_CROSSCOMPILING_EMULATOR)
#   WINEPREFIX, WINEDEBUG   the build's shared prefix; -all
#   LCOW_MSI, LCOW_ZIP      packages of this build; LCOW_VERSION their version
#   LCOW_SERVICE_NAME, LCOW_SERVICE_ARGUMENTS  what the MSI's ServiceInstall row must hold
#   LCOW_TEST_TMP           a scratch directory for logs (Linux path)

set -u
SKIP=77
WINE=${LCOW_WINE:-wine}
SERVICE=${LCOW_SERVICE_NAME:-lcowsnap}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree=;mshtml=}
unset DISPLAY

log() { printf '%s: %s\n' "${TEST_NAME:-installer}" "$*"; }
fail() {
  printf '%s: FAIL: %s\n' "${TEST_NAME:-installer}" "$*" >&2
  exit 1
}
check() { # check DESCRIPTION COMMAND... : run it, fail with DESCRIPTION when it fails
  local what=$1
  shift
  "$@" || fail "$what"
}

skip_unless_built() {
  if [ -n "${LCOW_INSTALLER_MISSING:-}" ]; then
    echo "SKIP: ${LCOW_INSTALLER_MISSING} not built in this tree yet, so there is no MSI/zip to test"
    exit $SKIP
  fi
}

# Windows path (Z:\...) of a Linux path, for arguments to Windows programs.
winpath() {
  local p
  p=$(readlink -f "$1")
  printf 'Z:%s' "${p//\//\\}"
}

DRIVE_C="${WINEPREFIX:?WINEPREFIX must be set}/drive_c"
INSTALL_DIR="$DRIVE_C/Program Files/lcowsnap"
# The MSI runs the service with the default root, %ProgramData%\lcowsnap. On Windows
# that is C:\ProgramData\lcowsnap; Wine 8 gives services ProgramData=C:\users\Public.
# clean_state_dirs empties both; find_state_dir says which one the service used.
STATE_DIR_CANDIDATES=("$DRIVE_C/ProgramData/lcowsnap" "$DRIVE_C/users/Public/lcowsnap")
STATE_DIR=
clean_state_dirs() { rm -rf "${STATE_DIR_CANDIDATES[@]}"; }
find_state_dir() { # sets STATE_DIR to the one candidate holding a LevelDB, or fails
  local dir found=()
  for dir in "${STATE_DIR_CANDIDATES[@]}"; do
    [ -f "$dir/meta/CURRENT" ] && found+=("$dir")
  done
  [ ${#found[@]} -eq 1 ] || fail "expected one state directory with meta/CURRENT, found ${#found[@]}: ${found[*]:-none}"
  STATE_DIR=${found[0]}
  local shown="C:${STATE_DIR#"$DRIVE_C"}"
  log "state directory: ${shown//\//\\}"
}
INSTALLED_CTL='C:\Program Files\lcowsnap\lcowsnapctl.exe'
INSTALLED_SVC='C:\Program Files\lcowsnap\lcowsnap.exe'

wine_run() { "$WINE" "$@" 2>&1 | tr -d '\r'; return "${PIPESTATUS[0]}"; }

# Current SCM state word (RUNNING, STOPPED, START_PENDING...) or ABSENT.
service_state() {
  local out
  if ! out=$(wine_run sc query "$SERVICE"); then
    echo ABSENT
    return
  fi
  printf '%s\n' "$out" | awk '/STATE/ { print $4; exit }'
}

wait_for_state() { # wait_for_state STATE SECONDS
  local want=$1 deadline=$((SECONDS + $2)) state
  while :; do
    state=$(service_state)
    [ "$state" = "$want" ] && return 0
    [ $SECONDS -ge $deadline ] && {
      log "service state is $state, wanted $want"
      return 1
    }
    sleep 0.5
  done
}

# After msiexec /i: the service must be RUNNING. Wine's msiexec normally starts it
# (ServiceControl Start="install"); if it did not, say so and start it with sc.
expect_running_after_install() {
  if wait_for_state RUNNING 20; then
    log "service is RUNNING after msiexec /i (started by the MSI's ServiceControl)"
    return 0
  fi
  local state
  state=$(service_state)
  [ "$state" = ABSENT ] && fail "msiexec /i did not create the $SERVICE service"
  log "NOTE: Wine's msiexec left the service $state; starting it with 'sc start'"
  wine_run sc start "$SERVICE" >/dev/null
  wait_for_state RUNNING 20 || {
    wine_run sc query "$SERVICE"
    fail "service did not reach RUNNING even with sc start"
  }
}

ctl() { wine_run "$INSTALLED_CTL" "$@"; }

# The installed service's ImagePath must be the quoted exe and the MSI's
# arguments (CWE-428: unquoted, "C:\Program Files\..." lets Windows try
# C:\Program.exe first). Wine's InstallServices writes it unquoted; the MSI's
# LcowQuoteImagePath step quotes it. expect_quoted_image_path WHEN
expect_quoted_image_path() {
  local image_path
  image_path=$(wine_run reg query "HKLM\\SYSTEM\\CurrentControlSet\\Services\\$SERVICE" /v ImagePath |
    sed -n 's/.*ImagePath *REG_[A-Z_]* *//p')
  log "ImagePath $1: $image_path"
  [ "$image_path" = "\"$INSTALLED_SVC\" ${LCOW_SERVICE_ARGUMENTS:?}" ] ||
    fail "ImagePath $1 is '$image_path', want '\"$INSTALLED_SVC\" $LCOW_SERVICE_ARGUMENTS' (quoted exe)"
}
# The version the running service reports over the pipe (Version RPC), not the client's.
service_version() {
  local out
  out=$(ctl --json version) || fail "lcowsnapctl --json version failed: $out"
  sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' <<<"$out"
}

# Product codes of installed products named lcowsnap (Wine's Uninstall registry).
installed_product_codes() {
  wine_run reg query 'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall' /s |
    awk '/^HKEY_/ { key = $0 } /DisplayName/ && $NF == "lcowsnap" { n = split(key, p, "\\"); print p[n] }'
}

installed_product_version() { # installed_product_version PRODUCTCODE
  wine_run reg query "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\$1" /v DisplayVersion |
    awk '/DisplayVersion/ { print $NF }'
}

service_entry_count() { # SCM entries that run the installed Program Files\lcowsnap\lcowsnap.exe
  wine_run reg query 'HKLM\SYSTEM\CurrentControlSet\Services' /s |
    awk 'BEGIN { n = 0 } /ImagePath/ && index(tolower($0), "program files\\lcowsnap\\lcowsnap.exe") { n++ } END { print n }'
}

# The Wine tests need the wine fixture's persistent wineserver: without it the
# server exits between two commands, stops every service and reloads the
# registry (services STOPPED mid-test, values written a moment ago gone).
# Checked, not assumed: a test registered without the fixture fails here,
# saying so, instead of failing at random under load.
require_persistent_wineserver() {
  local helper
  helper=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/wine-env.sh
  LCOW_WINEPREFIX=$WINEPREFIX "$helper" persistent >/dev/null ||
    fail "no persistent wineserver for $WINEPREFIX: run the Wine tests through ctest (fixture wine_up, FIXTURES_REQUIRED wine)"
}

# Serialise with every other user of the service name in this prefix (CTest's
# RESOURCE_LOCK covers one ctest run; this lock also covers other build trees).
take_service_lock() {
  require_persistent_wineserver
  exec 9>"$WINEPREFIX/.lcowsnap-service.lock"
  flock -n 9 && return 0
  # Another build tree's test holds it (the prefix is shared): say so, and for how
  # long, so a slow run shows the wait apart from the test's own time.
  local started=$SECONDS
  log "waiting for $WINEPREFIX/.lcowsnap-service.lock (another run's installer test holds it)"
  flock -w 900 9 || fail "could not get $WINEPREFIX/.lcowsnap-service.lock within 900 s"
  log "got the service lock after $((SECONDS - started)) s"
}

# Windows Installer records which products use a component under
#   HKLM\...\Installer\UserData\S-1-5-18\Components\<packed component GUID>
# one value per client product (its packed product code). An uninstall removes a
# component (files, its ServiceControl stop and delete) only when no other client is
# left: Wine's msi_get_component_action answers "has N clients left" and StopServices,
# DeleteServices and RemoveFiles then skip it, so msiexec /x succeeds and leaves the
# service RUNNING (and the wait step times out after 30 s, as nothing stops it).
# A client value whose product is not installed is an orphan: an msiexec that died
# between ProcessComponents and RegisterProduct leaves one (killed, or its wineserver
# crashed and the prefix's registry came back from a periodic save taken mid-install).
# Then every later uninstall in that prefix keeps the service. These helpers find
# them; remove_orphaned_component_clients deletes them (test prefixes only).
INSTALLER_COMPONENTS_KEY='HKLM\Software\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Components'
INSTALLER_PRODUCTS_KEY='HKLM\Software\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Products'

# Windows Installer's packed form of a GUID: {12345678-ABCD-EF01-2345-6789ABCDEF01}
# -> 87654321DCBA10FE32547698BADCFE10 (the first three groups reversed, then each
# byte's two hex digits swapped).
packed_guid() {
  local g=${1//[\{\}-]/} out= i
  g=${g^^}
  for ((i = 7; i >= 0; i--)); do out+=${g:i:1}; done
  for ((i = 11; i >= 8; i--)); do out+=${g:i:1}; done
  for ((i = 15; i >= 12; i--)); do out+=${g:i:1}; done
  for ((i = 16; i < 32; i += 2)); do out+=${g:i+1:1}${g:i:1}; done
  printf '%s\n' "$out"
}

# The ComponentId GUIDs of the MSI's components (every version shares them).
msi_component_ids() { # msi_component_ids MSI
  msiinfo export "$1" Component | awk -F '\t' 'NR > 3 && $2 ~ /^\{/ { print $2 }'
}

# Client products (packed codes) registered for component GUID $1.
component_clients() {
  wine_run reg query "$INSTALLER_COMPONENTS_KEY\\$(packed_guid "$1")" |
    awk 'length($1) == 32 && $1 ~ /^[0-9A-F]+$/ { print $1 }'
}

# Packed codes of the products installed per machine.
installed_packed_products() {
  wine_run reg query "$INSTALLER_PRODUCTS_KEY" | sed -n 's/.*\\Products\\\([0-9A-F]*\)$/\1/p'
}

# "COMPONENT-GUID:PACKED-CLIENT", one line per client of the MSI's components.
component_client_pairs() { # component_client_pairs MSI
  local id client
  for id in $(msi_component_ids "$1"); do
    for client in $(component_clients "$id"); do echo "$id:$client"; done
  done
}

# The pairs whose product is not installed.
orphaned_component_clients() { # orphaned_component_clients MSI
  local pair installed
  installed=$(installed_packed_products)
  for pair in $(component_client_pairs "$1"); do
    grep -qx "${pair#*:}" <<<"$installed" || echo "$pair"
  done
}

# Every client of the MSI's components, installed or not, on one line.
component_client_report() { # component_client_report MSI
  component_client_pairs "$1" | tr '\n' ' '
}

remove_orphaned_component_clients() { # remove_orphaned_component_clients MSI
  local orphan id client key
  for orphan in $(orphaned_component_clients "$1"); do
    id=${orphan%%:*} client=${orphan#*:}
    key="$INSTALLER_COMPONENTS_KEY\\$(packed_guid "$id")"
    log "removing an orphaned Windows Installer client $client of component $id (its product is not installed: an interrupted msiexec left it; with it every uninstall would keep the service)"
    wine_run reg delete "$key" /v "$client" /f >/dev/null || fail "could not delete $key /v $client"
    [ -n "$(component_clients "$id")" ] || wine_run reg delete "$key" /f >/dev/null
  done
}

# After msiexec /x: the service must be gone; if not, say whether Windows Installer
# kept its component for another client (so never stopped or deleted it).
expect_service_removed() { # expect_service_removed WHEN MSI
  local state clients
  state=$(service_state)
  [ "$state" = ABSENT ] && return 0
  clients=$(component_client_report "$2")
  fail "service still registered $1 (state $state); Windows Installer clients of the MSI's components left: ${clients:-none, so the stop or the delete itself failed}"
}

# Refuse to run over somebody else's service; remove our own leftovers.
require_no_service() {
  local code
  # Orphans first: with one, the leftover product's msiexec /x below would keep the service.
  remove_orphaned_component_clients "${LCOW_MSI:?}"
  for code in $(installed_product_codes); do
    log "removing a leftover lcowsnap MSI product $code from an earlier run"
    wine_run msiexec /x "$code" /qn >/dev/null
  done
  [ "$(service_state)" != ABSENT ] || return 0
  # No product is installed now. A service running the MSI's installed exe with the
  # MSI's arguments (quoted or not yet quoted) is what an interrupted msiexec /i
  # left (InstallServices ran, RegisterProduct did not): ours to remove. Anything
  # else is somebody else's service.
  local image_path
  image_path=$(wine_run reg query "HKLM\\SYSTEM\\CurrentControlSet\\Services\\$SERVICE" /v ImagePath |
    sed -n 's/.*ImagePath *REG_[A-Z_]* *//p')
  case $image_path in
  "\"$INSTALLED_SVC\" ${LCOW_SERVICE_ARGUMENTS:?}" | "$INSTALLED_SVC ${LCOW_SERVICE_ARGUMENTS:?}")
    log "removing the $SERVICE service an interrupted msiexec /i left (no product installed; ImagePath $image_path)"
    wine_run sc stop "$SERVICE" >/dev/null
    wait_for_state STOPPED 60 || fail "the leftover $SERVICE service did not stop"
    wine_run sc delete "$SERVICE" >/dev/null
    wait_for_state ABSENT 30 || fail "the leftover $SERVICE service could not be deleted"
    rm -rf "$INSTALL_DIR"
    ;;
  *)
    fail "a service named $SERVICE already exists in $WINEPREFIX (ImagePath '$image_path', not the MSI's and no MSI product installed); refusing to touch it"
    ;;
  esac
}

# Trap cleanup: uninstall whatever this test installed, leave no service behind.
cleanup_installs() {
  local code
  for code in $(installed_product_codes); do
    wine_run msiexec /x "$code" /qn >/dev/null
  done
  if [ "$(service_state)" != ABSENT ]; then
    wine_run sc stop "$SERVICE" >/dev/null
    sleep 1
    wine_run sc delete "$SERVICE" >/dev/null
  fi
  rm -rf "$INSTALL_DIR"
}

# A process that keeps an exe's image mapped, as a stopping service's process does
# until it has exited: the exe run in the foreground on its own root and pipe.
# start_exe_holder WINDOWS-EXE ROOT-DIR(Linux) PIPE; sets HOLDER_PID (the Wine process).
HOLDER_PID=
start_exe_holder() {
  local exe=$1 root=$2 pipe=$3 i
  mkdir -p "$root"
  "$WINE" "$exe" --root "$(winpath "$root")" --address "$pipe" >"$root.log" 2>&1 &
  HOLDER_PID=$!
  for i in $(seq 1 100); do
    grep -q "listening on" "$root.log" 2>/dev/null && return 0
    kill -0 "$HOLDER_PID" 2>/dev/null || break
    sleep 0.2
  done
  cat "$root.log" >&2
  fail "the holder ($exe on $pipe) did not start"
}
# stop_exe_holder_after SECONDS: let the holder go SECONDS from now, in the background.
RELEASER_PID=
stop_exe_holder_after() {
  (
    sleep "$1"
    kill -TERM "$HOLDER_PID" 2>/dev/null
  ) &
  RELEASER_PID=$!
}
# SIGTERM: Wine ends the process; the image mapping goes with it. A pending
# stop_exe_holder_after runs out first.
stop_exe_holder() {
  [ -z "$RELEASER_PID" ] || wait "$RELEASER_PID" 2>/dev/null
  RELEASER_PID=
  [ -n "$HOLDER_PID" ] || return 0
  kill -TERM "$HOLDER_PID" 2>/dev/null
  wait "$HOLDER_PID" 2>/dev/null
  HOLDER_PID=
}
