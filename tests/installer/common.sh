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
  flock -w 900 9 || fail "could not get $WINEPREFIX/.lcowsnap-service.lock within 900 s"
}

# Refuse to run over somebody else's service; remove our own leftovers.
require_no_service() {
  local code
  for code in $(installed_product_codes); do
    log "removing a leftover lcowsnap MSI product $code from an earlier run"
    wine_run msiexec /x "$code" /qn >/dev/null
  done
  if [ "$(service_state)" != ABSENT ]; then
    wine_run reg query "HKLM\\SYSTEM\\CurrentControlSet\\Services\\$SERVICE" /v ImagePath
    fail "a service named $SERVICE already exists in $WINEPREFIX (not installed by an MSI); refusing to touch it"
  fi
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
