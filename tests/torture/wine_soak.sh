#!/bin/bash
# wine_soak.sh DIR LCOWSNAP.EXE SOAK.EXE CLIENTS SECONDS WINDOW WARMUP WINE...
# Soak of the Windows build under Wine: lcowsnap.exe (copied to a unique
# name, so soak.exe finds exactly this process among the prefix's others)
# on a named pipe, soak.exe with CLIENTS clients for SECONDS, sampling the
# service's handle count and working set; the first window judged starts
# after WARMUP seconds (soak --warmup). Stops the service with SIGINT.
set -u
dir=$1 svc_exe=$2 soak_exe=$3 clients=$4 seconds=$5 window=$6 warmup=$7
shift 7
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
# soak.exe judges the service's Windows handles (from the system handle table:
# Wine's GetProcessHandleCount gives 0). As a second view, printed but not
# judged, the Unix descriptors of the Wine process hosting lcowsnap.exe are
# sampled here (files and sockets Wine opened on its behalf): about 40 of them,
# so the few files an in-flight call holds move them by 10% (41 -> 45 seen
# with the handles flat), too coarse to judge.
upid=$(pgrep -f "$name" | head -1)
(
    t=0
    while kill -0 "$upid" 2>/dev/null; do
        t=$((t + 1))
        echo "$t $(ls /proc/"$upid"/fd 2>/dev/null | wc -l) $(awk '/VmRSS/ {print $2}' /proc/"$upid"/status 2>/dev/null)"
        sleep 1
    done
) >"$dir/unix-samples.txt" &
sampler=$!
summary=${LCOW_TORTURE_SUMMARY:-}
LCOW_TORTURE_SUMMARY= "${wine[@]}" "$soak_exe" --address "$pipe" --process-name "$name" \
    --clients "$clients" --seconds "$seconds" --window "$window" --warmup "$warmup" \
    --max-latency-ms 30000 \
    --label "wine" | tr -d '\r' | tee "$dir/soak.out"
rc=${PIPESTATUS[0]}
kill "$sampler" 2>/dev/null
wait "$sampler" 2>/dev/null
# First WINDOW seconds after the warm-up vs the last WINDOW seconds (the
# sampler started with the soak).
read -r fd_first fd_last < <(awk -v w="$window" -v s="$seconds" -v u="$warmup" '
    $1 > u && $1 <= u + w {f += $2; nf++} $1 > s - w && $1 <= s {l += $2; nl++}
    END {printf "%.1f %.1f\n", nf ? f / nf : -1, nl ? l / nl : -1}' "$dir/unix-samples.txt")
fd_line="torture soak (wine): Unix fds of the Wine process hosting lcowsnap.exe (pid $upid), first (after ${warmup}s)/last ${window}s: $fd_first/$fd_last"
if awk -v a="$fd_first" -v b="$fd_last" 'BEGIN {exit !(a > 0 && b <= a * 1.10 && b >= a * 0.90)}'; then
    fd_line="$fd_line (within 10%; informational)"
else
    fd_line="$fd_line (moved more than 10%; informational, the handle count above is judged)"
fi
echo "$fd_line"
[ -n "$summary" ] && { grep '^torture soak' "$dir/soak.out"; echo "$fd_line"; } >>"$summary"
[ $rc = 0 ] || tail -n 30 "$log"
exit $rc
