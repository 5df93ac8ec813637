#!/usr/bin/env bash
# The build's own headless Wine, for the win64 tests.
#
# Source it to get the environment and the functions:
#   . scripts/wine-env.sh     # WINEPREFIX, WINEDEBUG=-all, WINEDLLOVERRIDES, no DISPLAY
#   wine_init                 # create the prefix once (about 5 s, ~700 MB)
#   wine_up / wine_down       # persistent wineserver for this prefix / end it
# or run it:
#   scripts/wine-env.sh init|up|down|status
#   scripts/wine-env.sh run PROGRAM.exe ARGS...   # wine with this environment
#
# The prefix is LCOW_WINEPREFIX (default build/wine-prefix). It is shared by
# every build tree of the checkout, so it is never deleted here.
#
# up/down are what the CTest fixture (cmake/LcowWine.cmake) calls. A persistent
# wineserver (`wineserver -p`) makes each test start in ~0.05 s instead of
# ~2.5 s and keeps services alive between processes. Several test runs may
# share the prefix at once, so `up` records the calling process (the ctest that
# runs the fixture) in build/wine-prefix.sessions/, and `down` runs
# `wineserver -k` for this prefix only when no recorded session is alive any
# more (dead ones, e.g. an interrupted ctest, are pruned).

_lcow_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export WINEPREFIX=${LCOW_WINEPREFIX:-$_lcow_root/build/wine-prefix}
export WINEDEBUG=-all
# ',' joins DLLs with the same setting: no Mono/Gecko installer, ever.
export WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY

_lcow_wine_lock=$WINEPREFIX.lock
_lcow_wine_sessions=$WINEPREFIX.sessions

# Runs "$@" holding the prefix lock. Every Wine command below gets `9>&-`:
# a wineserver or service that inherited fd 9 would hold the lock forever.
_lcow_wine_locked() {
  mkdir -p "$(dirname "$WINEPREFIX")"
  (
    flock 9
    "$@"
  ) 9>"$_lcow_wine_lock"
}

_lcow_wine_init_locked() {
  if [ -f "$WINEPREFIX/.lcow-initialised" ]; then
    return 0
  fi
  local start
  start=$(date +%s)
  echo "wine-env: initialising $WINEPREFIX (once)"
  # All output to a log and no inherited descriptors: the processes wineboot
  # leaves behind must not hold a caller's pipe (ctest waits for it).
  if ! wineboot --init </dev/null >"$WINEPREFIX.init.log" 2>&1 9>&-; then
    cat "$WINEPREFIX.init.log" >&2
    echo "wine-env: wineboot --init failed" >&2
    return 1
  fi
  touch "$WINEPREFIX/.lcow-initialised"
  echo "wine-env: prefix ready in $(($(date +%s) - start)) s"
}

wine_init() {
  _lcow_wine_locked _lcow_wine_init_locked
}

_lcow_wine_prune_sessions() {
  local f
  mkdir -p "$_lcow_wine_sessions"
  for f in "$_lcow_wine_sessions"/*; do
    [ -e "$f" ] || continue
    kill -0 "${f##*/}" 2>/dev/null || rm -f "$f"
  done
}

_lcow_wine_up_locked() {
  local owner=$1 tries
  _lcow_wine_init_locked || return 1
  _lcow_wine_prune_sessions
  : >"$_lcow_wine_sessions/$owner"
  # `wineserver -p` fails (rc 2) while a server already runs for the prefix.
  # A non-persistent one exits ~3 s after its last process: retry for a while;
  # if it stays, another session's (persistent or busy) server serves us.
  for tries in 1 2 3 4 5 6 7 8; do
    if wineserver -p </dev/null >/dev/null 2>&1 9>&-; then
      break
    fi
    [ -n "$(ls -A "$_lcow_wine_sessions" | grep -vx "$owner")" ] && break
    sleep 1
  done
  # Starts services.exe and friends once, in the background of the server.
  wine wineboot </dev/null >/dev/null 2>&1 9>&-
}

_lcow_wine_down_locked() {
  local owner=$1
  rm -f "$_lcow_wine_sessions/$owner"
  _lcow_wine_prune_sessions
  if [ -n "$(ls -A "$_lcow_wine_sessions")" ]; then
    echo "wine-env: wineserver left running for $(ls "$_lcow_wine_sessions" | wc -l) other session(s)"
    return 0
  fi
  wineserver -k </dev/null >/dev/null 2>&1 9>&- || true
  wineserver -w </dev/null >/dev/null 2>&1 9>&- || true
}

# wine_up [OWNER-PID]: the owner is the process whose lifetime the session
# follows (default: the caller's parent, i.e. ctest for the fixture).
wine_up() {
  _lcow_wine_locked _lcow_wine_up_locked "${1:-$PPID}"
}

wine_down() {
  _lcow_wine_locked _lcow_wine_down_locked "${1:-$PPID}"
}

wine_status() {
  echo "WINEPREFIX=$WINEPREFIX"
  if [ -f "$WINEPREFIX/.lcow-initialised" ]; then
    echo "prefix: initialised ($(du -sh "$WINEPREFIX" 2>/dev/null | cut -f1))"
  else
    echo "prefix: not initialised"
  fi
  _lcow_wine_prune_sessions
  echo "sessions: $(ls "$_lcow_wine_sessions" | tr '\n' ' ')"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cmd=${1:-status}
  [ $# -gt 0 ] && shift
  case $cmd in
    init) wine_init ;;
    # The fixture's parent is ctest; `up`/`down` from a shell follow that shell.
    up) wine_up "${1:-$PPID}" ;;
    down) wine_down "${1:-$PPID}" ;;
    status) wine_status ;;
    run)
      wine_init >&2
      exec wine "$@"
      ;;
    *)
      echo "usage: $0 init|up|down|status|run PROGRAM ARGS..." >&2
      exit 2
      ;;
  esac
fi
