#!/usr/bin/env bash
# lcowsnap in the foreground: command-line errors, address in use, store
# locked, graceful stop, restart. Natively, or under Wine (LCOW_UNDER_WINE=1).
set -euo pipefail
: "${LCOWSNAP_EXE:?}" "${LCOWSNAPCTL_EXE:?}" "${LCOW_TEST_TMP:?}"
WORK="$LCOW_TEST_TMP/foreground-$$"
rm -rf "$WORK"
mkdir -p "$WORK"
PIDS=()

fail() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
SOCKDIR=
cleanup() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ -z "$SOCKDIR" ] || rm -rf "$SOCKDIR"
}
trap cleanup EXIT

if [ "${LCOW_UNDER_WINE:-0}" = 1 ]; then
  unset DISPLAY
  export WINEDEBUG=-all
  RUN=(wine "$LCOWSNAP_EXE")
  ctl() { wine "$LCOWSNAPCTL_EXE" "$@"; }
  path() { printf 'Z:%s' "$(realpath -m "$1" | tr / '\\')"; }
  ADDRESS="\\\\.\\pipe\\lcowsnap-fg-$$"
  STOP_SIGNAL=INT # Wine delivers SIGINT as Ctrl+C; SIGTERM just kills
  STOP_TEXT="Ctrl+C received"
else
  RUN=("$LCOWSNAP_EXE")
  ctl() { "$LCOWSNAPCTL_EXE" "$@"; }
  path() { printf '%s' "$1"; }
  # Sockets in a short private directory: any checkout depth (sun_path: 107 bytes).
  SOCKDIR=$(mktemp -d /tmp/lcow.XXXXXX)
  ADDRESS="$SOCKDIR/lcowsnap.sock"
  STOP_SIGNAL=TERM
  STOP_TEXT="SIGTERM received"
fi

expect_exit() { # CODE TEXT ARGS...
  local want=$1 text=$2 rc=0
  shift 2
  "${RUN[@]}" "$@" >"$WORK/out.txt" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || fail "lcowsnap $* exited $rc, expected $want: $(cat "$WORK/out.txt")"
  grep -qF -- "$text" "$WORK/out.txt" || fail "lcowsnap $*: output lacks '$text': $(cat "$WORK/out.txt")"
  echo "ok: lcowsnap $* -> $rc ($(head -c 120 "$WORK/out.txt" | tr -d '\r' | head -n 1))"
}

start() { # NAME ROOT: starts in the background, waits until it serves
  local name=$1
  # A simple command in the background: $! is lcowsnap (or wine) itself.
  "${RUN[@]}" --root "$(path "$2")" --address "$ADDRESS" --log-level debug >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 120); do
    grep -q "in the foreground" "$WORK/$name.log" && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || fail "$name exited at startup"
    sleep 0.25
  done
  fail "$name did not start"
}

stop_last() { # stops the most recent instance, expects exit 0
  local pid=${PIDS[-1]} rc=0
  kill -s "$STOP_SIGNAL" "$pid"
  wait "$pid" || rc=$?
  unset 'PIDS[-1]'
  [ $rc -eq 0 ] || fail "exit code $rc after SIG$STOP_SIGNAL"
}

expect_exit 0 "lcowsnap " --version
expect_exit 0 "--root DIR" --help
if [ "${LCOW_UNDER_WINE:-0}" != 1 ]; then
  expect_exit 0 "foreground only" --help
  expect_exit 2 "available only on Windows" --register-service
fi
expect_exit 2 "unknown flag '--bogus'" --bogus
expect_exit 2 "--root needs a value" --root
expect_exit 2 "is not an absolute path" --root relative/dir
echo "file" >"$WORK/blocker"
expect_exit 3 "is not writable" --root "$(path "$WORK/blocker/state")"

start a "$WORK/a"
ctl --address "$ADDRESS" version >/dev/null || fail "version over $ADDRESS"
ctl --address "$ADDRESS" prepare extract-fg >/dev/null
ctl --address "$ADDRESS" commit fg-layer extract-fg || fail "commit"
expect_exit 5 "is in use by another process" --root "$(path "$WORK/b")" --address "$ADDRESS"
if [ "${LCOW_UNDER_WINE:-0}" = 1 ]; then
  OTHER="\\\\.\\pipe\\lcowsnap-fg2-$$"
else
  OTHER="$SOCKDIR/other.sock"
fi
expect_exit 4 "opening the snapshot store in" --root "$(path "$WORK/a")" --address "$OTHER"
stop_last
grep -q "$STOP_TEXT" "$WORK/a.log" || fail "no graceful shutdown logged"
grep -q "snapshot store in .* closed" "$WORK/a.log" || fail "store not closed"
echo "ok: SIG$STOP_SIGNAL -> graceful stop, exit 0"

start a2 "$WORK/a"
ctl --address "$ADDRESS" info fg-layer | grep -q committed || fail "fg-layer lost across restart"
stop_last
echo "ok: committed snapshot survived the restart"
rm -rf "$WORK"
echo PASS
