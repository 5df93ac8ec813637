#!/bin/bash
# wine_soak.sh DIR LCOWSNAP.EXE SOAK.EXE CLIENTS SECONDS WINDOW WINE...
# Soak of the Windows build under Wine: lcowsnap.exe (copied to a unique
# name, so soak.exe finds exactly this process among the prefix's others)
# on a named pipe, soak.exe with CLIENTS clients for SECONDS, sampling the
# service's handle count and working set. Stops the service with SIGINT.
set -u
dir=$1 svc_exe=$2 soak_exe=$3 clients=$4 seconds=$5 window=$6
shift 6
wine=("$@")
rm -rf "$dir" && mkdir -p "$dir" || exit 1
name=lcowsnap-soak-$$.exe
cp "$svc_exe" "$dir/$name" || exit 1
winpath() { printf 'Z:%s' "${1//\//\\}"; }
root=$(winpath "$dir/root")
pipe="\\\\.\\pipe\\lcowsnap-soak-$$"
log=$dir/service.log
"${wine[@]}" "$dir/$name" --root "$root" --address "$pipe" --scratch-backend native \
    >"$log" 2>&1 &
pid=$!
stop() {
    kill -INT "$pid" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
trap stop EXIT
for _ in $(seq 1 600); do
    grep -q "rpc: listening on" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "service exited:"; cat "$log"; exit 1; }
    sleep 0.1
done
grep -q "rpc: listening on" "$log" || { echo "service did not come up"; cat "$log"; exit 1; }
summary=${LCOW_TORTURE_SUMMARY:-}
LCOW_TORTURE_SUMMARY= "${wine[@]}" "$soak_exe" --address "$pipe" --process-name "$name" \
    --clients "$clients" --seconds "$seconds" --window "$window" --max-latency-ms 30000 \
    --label "wine" | tr -d '\r' | tee "$dir/soak.out"
rc=${PIPESTATUS[0]}
[ -n "$summary" ] && grep '^torture soak' "$dir/soak.out" >>"$summary"
[ $rc = 0 ] || tail -n 30 "$log"
exit $rc
