#!/bin/bash
# with_service.sh HOST_ROOT ADDRESS -- CTL... -- SERVICE... -- TEST...
#
# Starts the lcowsnap service (SERVICE..., Wine-prefixed for the Windows exe)
# on a fresh state directory, waits until `CTL... --address ADDRESS version`
# answers, runs TEST... with LCOW_IT_ADDRESS set, then stops the service with
# SIGINT (Ctrl+C: in-flight requests finish) and checks it exited with 0.
# "@PID@" in ADDRESS and in SERVICE/TEST arguments is replaced by this
# script's pid, so concurrent runs never share an endpoint; "@ADDRESS@" by
# the address; "@SDDL@" by $LCOW_IT_SDDL_BARS with '|' read as ';' (CMake
# cannot pass semicolons), also exported as LCOW_IT_SDDL. "@SOCKDIR@" in
# ADDRESS is a short private directory (mktemp -d /tmp/lcow.XXXXXX, mode 0700,
# removed at exit): a Unix socket there is reachable by any client whatever
# the checkout's depth (sun_path holds 107 bytes). The service log is printed
# when anything fails.
set -u
if [ -n "${LCOW_IT_SDDL_BARS:-}" ]; then
    export LCOW_IT_SDDL=${LCOW_IT_SDDL_BARS//|/;}
fi
sddl=${LCOW_IT_SDDL:-}
host_root=$1 address=${2//@PID@/$$}
shift 2
if [[ $address == *@SOCKDIR@* ]]; then
    sockdir=$(mktemp -d /tmp/lcow.XXXXXX) || exit 1
    trap 'rm -rf "$sockdir"' EXIT
    address=${address//@SOCKDIR@/$sockdir}
fi
[ "$1" = "--" ] || { echo "usage: $0 HOST_ROOT ADDRESS -- CTL... -- SERVICE... -- TEST..." >&2; exit 2; }
shift
ctl=() service=() test=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do ctl+=("$1"); shift; done
shift
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    a=${1//@PID@/$$}; a=${a//@SDDL@/"$sddl"}; service+=("${a//@ADDRESS@/"$address"}"); shift
done
shift
while [ $# -gt 0 ]; do a=${1//@PID@/$$}; test+=("${a//@ADDRESS@/"$address"}"); shift; done

rm -rf "$host_root" && mkdir -p "$host_root" || exit 1
log=$host_root/service.log
export LCOW_IT_ADDRESS=$address

"${service[@]}" >"$log" 2>&1 &
pid=$!
stop_service() {
    kill -INT "$pid" 2>/dev/null
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "with_service: service did not stop on SIGINT within 15 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 1
    fi
    wait "$pid"
}

ready=0
for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if "${ctl[@]}" --address "$address" --timeout 2000 version >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.1
done
if [ $ready != 1 ]; then
    echo "with_service: service did not come up on $address" >&2
    cat "$log" >&2
    kill -KILL "$pid" 2>/dev/null
    exit 1
fi

"${test[@]}"
rc=$?
stop_service
svc_rc=$?
if [ $rc != 0 ] || [ $svc_rc != 0 ]; then
    echo "with_service: test exit $rc, service exit $svc_rc; service log:" >&2
    tail -n 60 "$log" >&2
fi
[ $rc = 0 ] || exit $rc
exit $svc_rc
