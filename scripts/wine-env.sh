#!/usr/bin/env bash
# The build's own headless Wine, for the win64 tests.
#
# Source it to get the environment and the functions:
#   . scripts/wine-env.sh     # WINEPREFIX, WINEDEBUG=-all, WINEDLLOVERRIDES, no DISPLAY
#   wine_init                 # create the prefix once (about 5 s, ~700 MB)
#   wine_up / wine_down       # persistent wineserver for this prefix / end it
#   wine_persistent           # is this prefix's wineserver persistent? (0/1)
# or run it:
#   scripts/wine-env.sh init|up|down|status|persistent
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
#
# `up` returns only once this prefix's server IS persistent (its command line
# ends in a bare -p), whoever started it. A server that a plain `wine` started
# (-p0: it exits ~3 s after its last process and takes every service with it;
# a new one then reloads the registry, possibly before the old one saved it)
# cannot be made persistent, so `up` waits for it to exit and then starts its
# own; after LCOW_WINE_UP_WAIT seconds (default 300) it fails and names the
# processes keeping it alive. (It used to give up after 8 s, or at once when
# another session existed, and the tests then ran on whatever server there
# was: under load, Wine services stopped and registry writes vanished mid-test.)

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

# The pid of this prefix's running wineserver (it runs in
# <tmp>/server-<dev>-<inode of the prefix>), or nothing.
_lcow_wine_server_pid() {
  local dir pid
  dir=$(printf 'server-%x-%x' $(stat -c '%d %i' "$WINEPREFIX" 2>/dev/null)) || return 0
  for pid in $(pgrep wineserver); do
    [ "$(basename "$(readlink "/proc/$pid/cwd" 2>/dev/null)")" = "$dir" ] && echo "$pid" && return 0
  done
  return 0
}

# 0 when this prefix's wineserver runs and is persistent (its last -p option
# is a bare -p: no idle timeout).
wine_persistent() {
  local pid last
  pid=$(_lcow_wine_server_pid)
  [ -n "$pid" ] || return 1
  last=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -E '^-p[0-9]*$' | tail -n 1) || true
  [ "$last" = "-p" ]
}

_lcow_wine_up_locked() {
  local owner=$1 pid deadline=$((SECONDS + ${LCOW_WINE_UP_WAIT:-300}))
  _lcow_wine_init_locked || return 1
  _lcow_wine_prune_sessions
  : >"$_lcow_wine_sessions/$owner"
  # `wineserver -p` fails (rc 2) while a server already runs for the prefix:
  # fine if that one is persistent (another session's); if not, wait until it
  # has exited (~3 s after its last process) and start ours.
  until wine_persistent; do
    if [ $SECONDS -ge $deadline ]; then
      pid=$(_lcow_wine_server_pid)
      echo "wine-env: the wineserver of $WINEPREFIX (pid ${pid:-?}) is not persistent and has not" \
        "exited for ${LCOW_WINE_UP_WAIT:-300} s; Wine processes keeping it alive:" >&2
      pgrep -af '\.exe' | head -n 20 >&2
      rm -f "$_lcow_wine_sessions/$owner"
      return 1
    fi
    if wineserver -p </dev/null >/dev/null 2>&1 9>&-; then
      sleep 0.2 # started: it is checked at the top
    else
      sleep 1
    fi
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
    persistent)
      if wine_persistent; then
        echo "wine-env: the wineserver of $WINEPREFIX is persistent (pid $(_lcow_wine_server_pid))"
      else
        pid=$(_lcow_wine_server_pid)
        echo "wine-env: the wineserver of $WINEPREFIX is ${pid:+not persistent (pid $pid, $(tr '\0' ' ' <"/proc/$pid/cmdline"))}${pid:-not running}" >&2
        exit 1
      fi
      ;;
    run)
      wine_init >&2
      exec wine "$@"
      ;;
    *)
      echo "usage: $0 init|up|down|status|persistent|run PROGRAM ARGS..." >&2
      exit 2
      ;;
  esac
fi
